// The Activity table from GET /api/activity, refreshed every 5 s. Values go in as text only.
(function () {
  "use strict";
  const $ = (sel) => document.querySelector(sel);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
    return node;
  }

  function state(item) {
    const badge = el("span", { class: "badge " + (item.state === "failed" ? "error" : item.state === "done" ? "ok" : "none") }, item.state);
    if (item.state !== "failed" || !item.message) return badge;
    return el("span", {}, badge, el("br"), el("small", {}, (item.step ? item.step + ": " : "") + item.message));
  }

  function rate(item) {
    if (item.instances_per_second == null) return "-";
    return item.instances_per_second + "/s, " + item.mb_per_second + " MB/s";
  }

  function series(item) {
    const cell = el("td");
    item.series.forEach((uid) => {
      cell.append(el("a", { href: "/series/" + encodeURIComponent(uid) + "?project=" + encodeURIComponent(item.project), class: "series-link" }, uid.slice(-12)), " ");
    });
    if (item.series_count > item.series.length) cell.append("\u2026 (" + item.series_count + ")");
    return cell;
  }

  function row(item) {
    return el("tr", { "data-id": item.id, "data-state": item.state },
      el("td", {}, item.started_at.replace("T", " ").slice(0, 19)),
      el("td", {}, item.what),
      el("td", {}, item.who),
      el("td", {}, item.project + (item.dataset ? " / " + item.dataset : "")),
      el("td", {}, state(item)),
      el("td", {}, item.found), el("td", {}, item.imported), el("td", {}, item.ignored), el("td", {}, item.failed),
      el("td", {}, item.seconds == null ? "-" : item.seconds + " s"),
      el("td", {}, rate(item)),
      series(item),
      el("td", {}, item.run_url ? el("a", { href: item.run_url, target: "_blank", rel: "noopener" }, "run") : "-"));
  }

  async function refresh() {
    const chosen = $("#state").value;
    const url = "/api/activity" + (chosen ? "?state=" + encodeURIComponent(chosen) : "");
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      const data = await response.json();
      if (!response.ok) throw new Error(data && data.detail ? data.detail : response.statusText);
      $("#activity tbody").replaceChildren(...data.items.map(row));
      $("#counts").textContent = data.counts.running + " running, " + data.counts.failed + " failed";
      $("#status").textContent = data.items.length ? "" : "nothing yet";
    } catch (error) {
      $("#status").textContent = "not refreshed: " + error.message;
    }
  }

  $("#state").addEventListener("change", refresh);
  refresh();
  setInterval(refresh, 5000);
})();
