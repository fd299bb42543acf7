// What the Series pages share: field names, element building (values always as text, never as
// markup), the JSON fetch that turns an error answer into its detail, and the badges.
(function () {
  "use strict";
  const F = {
    patientName: "00100010 PatientName_keyword",
    patientId: "00100020 PatientID_keyword",
    modality: "00080060 Modality_keyword",
    studyDate: "00080020 StudyDate_date",
    studyDescription: "00081030 StudyDescription_keyword",
    seriesDescription: "0008103E SeriesDescription_keyword",
    seriesDate: "00080021 SeriesDate_date",
    seriesNumber: "00200011 SeriesNumber_integer",
    studyUid: "0020000D StudyInstanceUID_keyword",
    seriesUid: "0020000E SeriesInstanceUID_keyword",
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === "") continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function text(value) {
    if (value === null || value === undefined) return "";
    if (Array.isArray(value)) return value.map(text).join(", ");
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  // What a series is called on its card and page: its Series Description, else what it has of
  // modality, series number and date ("CT series 3, 2024-01-05"); derived says which, and the
  // text is empty when the header has none of them.
  function seriesLabel(doc) {
    const description = text(doc[F.seriesDescription]);
    if (description.trim()) return { text: description, derived: false };
    const number = text(doc[F.seriesNumber]);
    const date = text(doc[F.seriesDate]) || text(doc[F.studyDate]);
    const modality = text(doc[F.modality]);
    if (!modality && !number && !date) return { text: "", derived: true };
    const name = modality ? [modality, "series", number] : ["Series", number];
    return { text: [name.filter(Boolean).join(" "), date].filter(Boolean).join(", "), derived: true };
  }

  function status(message, isError) {
    const node = document.querySelector("#status");
    node.textContent = message;
    node.className = isError ? "error" : "";
  }

  async function api(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new Error(data && data.detail ? String(data.detail) : response.statusText);
    return data;
  }

  function validationBadge(validation) {
    if (!validation) return el("span", { class: "badge none" }, "not validated");
    const errors = Number(validation.errors || 0);
    const warnings = Number(validation.warnings || 0);
    // A representative set is checked at once; the rest later, in the background lane.
    const partial = validation.level === "representative"
      ? " (" + Number(validation.instances_checked || 0) + " checked so far)" : "";
    if (!errors && !warnings) return el("span", { class: "badge ok" }, "valid" + partial);
    const kind = errors ? "error" : "warning";
    return el("span", { class: "badge " + kind },
      errors + " error(s), " + warnings + " warning(s)" + partial);
  }

  // Indexed on arrival, before the PACS confirmed every instance (see pacs_state); or its
  // processing failed, and says where and why (it runs again by itself).
  function storingBadge(doc, label) {
    if (doc.pacs_state === "failed") {
      return el("span", { class: "badge failed", title: doc.failure || "" },
        "failed: " + (doc.failure || "see the batch").split(": ").slice(1).join(": "));
    }
    return doc.pacs_state === "storing" ? el("span", { class: "badge storing" }, label) : null;
  }

  window.dicomflowSeries = { F, el, text, seriesLabel, status, api, validationBadge, storingBadge };
})();
