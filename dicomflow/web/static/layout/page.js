// What the platform's page scripts share (window.dicomflow): calling this web service's JSON
// API with the session's CSRF token (base.html's csrf-token meta element), a status line,
// and sizes in the binary units the upload limits use.
(function () {
  "use strict";
  const token = document.querySelector("meta[name=csrf-token]");
  const CSRF = token ? { "X-CSRF-Token": token.content } : {};

  // The JSON answer; an answer that is not 2xx throws an Error with the API's detail and
  // the HTTP status (error.status).
  async function api(method, url, body) {
    const headers = { ...(method === "GET" ? {} : CSRF), ...(body ? { "Content-Type": "application/json" } : {}) };
    const response = await fetch(url, { method, headers, body: body ? JSON.stringify(body) : undefined });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const detail = data && data.detail ? (typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail)) : response.statusText;
      const error = new Error(detail);
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function status(selector, text, isError) {
    const el = document.querySelector(selector);
    el.textContent = text;
    el.className = isError ? "error" : "";
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  window.dicomflow = { CSRF, api, status, bytes };
})();
