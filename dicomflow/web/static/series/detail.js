// One series: summary, thumbnail, links into the PACS, the validation report and every
// indexed tag, from GET /api/series/{uid}/details. Values are put into the page as text only.
(function () {
  "use strict";
  const $ = (sel) => document.querySelector(sel);
  const { F, el, text, seriesLabel, status, api, validationBadge, storingBadge } = window.dicomflowSeries;

  function row(name, value) {
    return el("tr", {}, el("th", {}, name), el("td", {}, value));
  }

  function render(data) {
    const doc = data.document;
    const uid = data.series_uid;
    const project = data.project;
    const base = "/api/series/" + encodeURIComponent(uid);
    const scope = "?project=" + encodeURIComponent(project);
    const label = seriesLabel(doc);
    document.title = "dicomflow: " + (label.text || uid);
    $("#crumb").textContent = uid;
    $("#back").setAttribute("href", "/series?project=" + encodeURIComponent(project));
    $("#title").textContent = label.text || "(no series description)";
    $("#title").classList.toggle("derived", label.derived);

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
      row("PACS", storingBadge(doc, "storing: not every instance is in the PACS yet") || "stored"),
      row("Validation", validationBadge(doc.validation)));

    const links = $("#pacs-links");
    links.replaceChildren();
    if (data.pacs.viewer_url) {
      links.append(el("li", {}, el("a", { id: "viewer-link", href: data.pacs.viewer_url, target: "_blank", rel: "noopener" },
        "Orthanc explorer")));
    }
    links.append(el("li", {}, el("a", { id: "dicomweb-link", href: data.pacs.dicomweb_url, target: "_blank", rel: "noopener" },
      "DICOMweb (WADO-RS): " + data.pacs.dicomweb_url)));
    if (data.pacs.error) links.append(el("li", { class: "hint" }, "PACS lookup failed: " + data.pacs.error));

    $("#validation-badge").replaceChildren(validationBadge(doc.validation));
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
    $("#delete-series").onclick = () => deleteSeries(uid, project);
    $("#detail").hidden = false;
    status("");
  }

  // DELETE /api/series/{uid}: the server checks the role and refuses (409) while a run or
  // an import still works on the series; its message is shown as it is.
  async function deleteSeries(uid, project) {
    const question = "Delete series " + uid + " from project " + project + "?\n" +
      "When no other project holds it, it is removed from the PACS as well. This cannot be undone.";
    if (!window.confirm(question)) return;
    const csrf = document.querySelector("meta[name=csrf-token]").content;
    const response = await fetch("/api/series/" + encodeURIComponent(uid) + "?project=" +
      encodeURIComponent(project), { method: "DELETE", headers: { "X-CSRF-Token": csrf, Accept: "application/json" } });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      status("not deleted: " + (data && data.detail ? String(data.detail) : response.statusText), true);
      return;
    }
    const outcome = data.series.map((s) => s.outcome + (s.kept_in.length ? " (still in " + s.kept_in.join(", ") + ")" : "")).join("; ");
    $("#detail").hidden = true;
    status("series " + uid + " " + outcome + ".");
  }

  async function start() {
    const uid = decodeURIComponent(location.pathname.replace(/^\/series\//, ""));
    const project = new URLSearchParams(location.search).get("project") || "admin";
    status("loading\u2026");
    const data = await api("/api/series/" + encodeURIComponent(uid) + "/details?project=" +
      encodeURIComponent(project));
    render(data);
  }

  start().catch((error) => status(error.message, true));
})();
