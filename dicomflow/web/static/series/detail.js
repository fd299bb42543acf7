// One series: summary, thumbnail, links into the PACS, the validation report and every
// indexed tag, from GET /api/series/{uid}/details. Values are put into the page as text only.
(function () {
  "use strict";
  const $ = (sel) => document.querySelector(sel);
  const F = {
    patientName: "00100010 PatientName_keyword",
    patientId: "00100020 PatientID_keyword",
    modality: "00080060 Modality_keyword",
    studyDate: "00080020 StudyDate_date",
    studyDescription: "00081030 StudyDescription_keyword",
    seriesDescription: "0008103E SeriesDescription_keyword",
    studyUid: "0020000D StudyInstanceUID_keyword",
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "class") node.className = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
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

  function status(message, isError) {
    const node = $("#status");
    node.textContent = message;
    node.className = isError ? "error" : "";
  }

  function badge(validation) {
    if (!validation) return el("span", { class: "badge none" }, "not validated");
    const errors = Number(validation.errors || 0);
    const warnings = Number(validation.warnings || 0);
    const kind = errors ? "error" : warnings ? "warning" : "ok";
    return el("span", { class: "badge " + kind }, errors + " error(s), " + warnings + " warning(s)");
  }

  function row(name, value) {
    return el("tr", {}, el("th", {}, name), el("td", {}, value));
  }

  function render(data) {
    const doc = data.document;
    const uid = data.series_uid;
    const project = data.project;
    const base = "/api/series/" + encodeURIComponent(uid);
    const scope = "?project=" + encodeURIComponent(project);
    document.title = "dicomflow: " + (text(doc[F.seriesDescription]) || uid);
    $("#crumb").textContent = uid;
    $("#back").setAttribute("href", "/series?project=" + encodeURIComponent(project));
    $("#title").textContent = text(doc[F.seriesDescription]) || "(no series description)";

    const thumb = $("#thumb");
    const img = el("img", { alt: "thumbnail", src: base + "/thumbnail" + scope });
    img.addEventListener("error", () => {
      thumb.replaceChildren(el("div", { class: "fallback" }, text(doc[F.modality]) || "?",
        el("small", {}, "no thumbnail")));
    });
    thumb.replaceChildren(img);

    $("#summary tbody").replaceChildren(
      row("Patient", [text(doc[F.patientName]).replace(/\^+/g, " ").trim(), text(doc[F.patientId])]
        .filter(Boolean).join(" \u00b7 ") || "-"),
      row("Study", [text(doc[F.studyDescription]), text(doc[F.studyDate])].filter(Boolean).join(" \u00b7 ") || "-"),
      row("Modality", text(doc[F.modality]) || "-"),
      row("Instances", text(doc.instance_count)),
      row("Project(s)", text(doc.project)),
      row("Dataset(s)", text(doc.dataset)),
      row("Series UID", uid),
      row("Study UID", text(doc[F.studyUid])),
      row("Validation", badge(doc.validation)));

    const links = $("#pacs-links");
    links.replaceChildren();
    if (data.pacs.viewer_url) {
      links.append(el("li", {}, el("a", { id: "viewer-link", href: data.pacs.viewer_url, target: "_blank", rel: "noopener" },
        "Orthanc explorer")));
    }
    links.append(el("li", {}, el("a", { id: "dicomweb-link", href: data.pacs.dicomweb_url, target: "_blank", rel: "noopener" },
      "DICOMweb (WADO-RS): " + data.pacs.dicomweb_url)));
    if (data.pacs.error) links.append(el("li", { class: "hint" }, "PACS lookup failed: " + data.pacs.error));

    $("#validation-badge").replaceChildren(badge(doc.validation));
    const reportUrl = base + "/validation-report" + scope;
    fetch(reportUrl).then((response) => {
      if (response.ok) {
        // Sandboxed: the report is ours and script-free, but it quotes DICOM text.
        $("#report").setAttribute("src", reportUrl);
        $("#report-link").setAttribute("href", reportUrl);
      } else {
        $("#report").hidden = true;
        $("#report-link").hidden = true;
        $("#report-missing").hidden = false;
      }
    });

    const tbody = $("#tags tbody");
    tbody.replaceChildren(...data.tags.map((t) =>
      el("tr", { class: "depth-" + Math.min(t.depth, 3), "data-keyword": t.keyword },
        el("td", {}, t.tag), el("td", {}, t.keyword), el("td", {}, t.name), el("td", {}, t.value))));
    $("#tag-count").textContent = "(" + data.tags.length + ")";
    $("#tag-filter").addEventListener("input", (event) => {
      const words = event.target.value.toLowerCase();
      for (const tr of tbody.rows) tr.hidden = words !== "" && !tr.textContent.toLowerCase().includes(words);
    });

    $("#platform tbody").replaceChildren(
      ...Object.entries(data.platform).map(([name, value]) => row(name, text(value))));
    $("#detail").hidden = false;
    status("");
  }

  async function start() {
    const uid = decodeURIComponent(location.pathname.replace(/^\/series\//, ""));
    const project = new URLSearchParams(location.search).get("project") || "admin";
    status("loading\u2026");
    const response = await fetch("/api/series/" + encodeURIComponent(uid) + "/details?project=" +
      encodeURIComponent(project), { headers: { Accept: "application/json" } });
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new Error(data && data.detail ? String(data.detail) : response.statusText);
    render(data);
  }

  start().catch((error) => status(error.message, true));
})();
