// The review page: review uploads on the server (headers only), tick series (with what they
// reference), check the expected subject, import the selection, follow its four counts.
// Talks only to this web service's /api/uploads, /api/reviews and /api/imports.
(function () {
  "use strict";
  const $ = (sel) => document.querySelector(sel);
  const { api, status, bytes } = window.dicomflow;
  const state = { project: null, reviewId: null, review: null, series: {}, runId: null, timer: null };

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children || []) node.append(child);
    return node;
  }

  // -- uploads ----------------------------------------------------------------------------

  async function loadUploads() {
    state.project = $("#project").value;
    const body = $("#uploads-table tbody");
    body.replaceChildren();
    const data = await api("GET", "/api/uploads/" + encodeURIComponent(state.project));
    const uploads = {};
    for (const entry of data.entries) {
      const u = uploads[entry.upload_id] || (uploads[entry.upload_id] = { files: 0, size: 0, user: entry.user });
      u.files += 1;
      u.size += entry.size;
    }
    for (const [id, u] of Object.entries(uploads)) {
      const check = el("input", { type: "checkbox", value: id, className: "upload" });
      body.append(el("tr", {}, [el("td", {}, [check]), el("td", { textContent: id }),
        el("td", { textContent: String(u.files) }), el("td", { textContent: bytes(u.size) }),
        el("td", { textContent: u.user })]));
    }
  }

  // -- the review -------------------------------------------------------------------------

  async function review() {
    const uploads = [...document.querySelectorAll("#uploads-table input.upload:checked")].map((c) => c.value);
    if (!uploads.length) { status("#review-status", "tick at least one upload", true); return; }
    status("#review-status", "reading the headers of " + uploads.length + " upload(s) ...");
    try {
      const answer = await api("POST", "/api/reviews", {
        project: state.project,
        uploads,
        extension: $("#extension").value,
        expected_patient_id: $("#expected-patient-id").value,
        expected_sex: $("#expected-sex").value,
        expected_birth_date: $("#expected-birth-date").value,
        project_patient: $("#project-patient").value,
      });
      state.reviewId = answer.review_id;
      state.review = answer.review;
      render(answer.review);
      status("#review-status", "review " + answer.review_id + " ready");
    } catch (e) {
      status("#review-status", "review failed: " + e.message, true);
    }
  }

  function render(r) {
    state.series = {};
    const flagsBySeries = {};
    for (const f of r.flags) (flagsBySeries[f.series_uid] = flagsBySeries[f.series_uid] || []).push(f);
    const count = r.patients.reduce((n, p) => n + p.studies.reduce((m, s) => m + s.series.length, 0), 0);
    $("#review-summary").textContent = r.analysed + " file(s) analysed: " + r.patients.length +
      " patient(s), " + count + " series, " + r.ignored.length + " ignored, " + r.failures.length + " failed input(s)";
    $("#global-flags").replaceChildren(...(flagsBySeries[""] || []).map((f) => el("li", { className: "flag", textContent: f.message })),
      ...r.failures.map((f) => el("li", { className: "flag", textContent: "FAILED " + f.name + ": " + f.detail })));
    const tree = $("#tree");
    tree.replaceChildren();
    const selected = new Set(r.default_selection);
    for (const p of r.patients) {
      const patient = el("div", { className: "patient" }, [el("h3", {
        textContent: "Patient " + (p.patient_id || "(empty Patient ID)") + " " + p.patient_name +
          " · sex " + (p.sex || "-") + " · born " + (p.birth_date || "-") })]);
      for (const s of p.studies) {
        const table = el("table", { className: "series" }, [el("thead", {}, [el("tr", {}, ["", "modality", "#", "description", "date", "instances", "size", "references", "notes"].map((h) => el("th", { textContent: h })))])]);
        const tbody = el("tbody");
        for (const x of s.series) {
          state.series[x.series_uid] = x;
          const check = el("input", { type: "checkbox", className: "pick", value: x.series_uid, checked: selected.has(x.series_uid) });
          check.addEventListener("change", () => picked(check));
          const refs = x.references.map((uid) => (r.patients.flatMap((pp) => pp.studies.flatMap((ss) => ss.series)).find((y) => y.series_uid === uid) || {}).modality || uid);
          const notes = el("ul", { className: "flags" }, (flagsBySeries[x.series_uid] || []).map((f) =>
            el("li", { className: "flag" + (f.needs_override ? " needs-override" : ""), textContent: f.message })));
          if (x.in_project) notes.prepend(el("li", { className: "in-project", textContent: "already in the project" }));
          tbody.append(el("tr", { }, [el("td", {}, [check]), el("td", { className: "modality", textContent: x.modality }),
            el("td", { textContent: x.series_number }), el("td", { textContent: x.description }),
            el("td", { textContent: x.series_date || s.study_date }), el("td", { textContent: String(x.instances) }),
            el("td", { textContent: bytes(x.bytes) }), el("td", { className: "refs", textContent: refs.join(", ") }),
            el("td", {}, [notes])]));
          tbody.lastChild.dataset.series = x.series_uid;
        }
        table.append(tbody);
        patient.append(el("div", { className: "study" }, [el("h4", {
          textContent: "Study " + (s.study_date || "-") + " " + s.description + " (" + s.study_uid + ")" }), table]));
      }
      tree.append(patient);
    }
    $("#ignored-count").textContent = String(r.ignored.length);
    $("#ignored-list").replaceChildren(...r.ignored.map((i) => el("li", { textContent: i.name + ": " + i.reason + (i.detail ? " (" + i.detail + ")" : "") })));
    $("#override").checked = false;
    $("#tree-section").hidden = false;
    refresh();
  }

  // Ticking a series ticks what it references, transitively; unticking touches nothing else.
  function picked(check) {
    if (check.checked) {
      const todo = [...state.series[check.value].references];
      while (todo.length) {
        const uid = todo.pop();
        const box = document.querySelector('input.pick[value="' + uid + '"]');
        if (box && !box.checked) {
          box.checked = true;
          todo.push(...state.series[uid].references);
        }
      }
    }
    refresh();
  }

  function chosen() {
    return [...document.querySelectorAll("input.pick:checked")].map((c) => c.value);
  }

  function refresh() {
    const picks = new Set(chosen());
    $("#selected-count").textContent = String(picks.size);
    const needs = state.review.flags.some((f) => f.needs_override && picks.has(f.series_uid));
    $("#override-row").hidden = !needs;
    $("#import-button").disabled = picks.size === 0 || (needs && !$("#override").checked);
  }

  // -- the import -------------------------------------------------------------------------

  async function importSelection() {
    status("#import-status", "starting the import ...");
    try {
      const answer = await api("POST", "/api/reviews/" + encodeURIComponent(state.project) + "/" + state.reviewId + "/import", {
        dataset: $("#dataset").value,
        series: chosen(),
        extension: $("#extension").value,
        override: $("#override").checked,
        delete_upload: $("#delete-upload").checked,
      });
      status("#import-status", "import " + answer.run_id + " started");
      follow(answer.run_id);
    } catch (e) {
      status("#import-status", "import refused: " + e.message, true);
    }
  }

  function follow(runId) {
    state.runId = runId;
    const base = "/api/imports/" + encodeURIComponent(state.project) + "/" + runId;
    $("#run-id").textContent = runId;
    $("#log-txt").href = base + "/log.txt";
    $("#log-json").href = base + "/log.json";
    $("#retry-button").hidden = true;
    for (const id of ["analysed", "uploaded", "imported", "verified"]) $("#count-" + id).textContent = "-";
    $("#result").hidden = false;
    clearTimeout(state.timer);
    poll(base);
  }

  async function poll(base) {
    let run = null;
    try { run = await api("GET", base); } catch (e) { status("#run-state", "state unknown: " + e.message, true); }
    if (run) {
      const r = run.report;
      if (r) {
        $("#count-analysed").textContent = String(r.found);
        $("#count-uploaded").textContent = String(r.uploaded);
        $("#count-imported").textContent = String(r.imported);
        $("#count-verified").textContent = r.verification ? String(r.verification.verified) : "-";
        $("#report-text").textContent = run.report_lines.join("\n");
      }
      const verify = r && r.verification ? ", verification " + r.verification.state : "";
      status("#run-state", "state: " + run.state + verify, run.state === "failed");
      if (run.state === "failed") $("#retry-button").hidden = false;
      if (run.state === "success" || run.state === "failed") return;
    }
    state.timer = setTimeout(() => poll(base), 2000);
  }

  async function retry() {
    try {
      const answer = await api("POST", "/api/imports/" + encodeURIComponent(state.project) + "/" + state.runId + "/retry");
      status("#import-status", "retry " + answer.run_id + " of " + answer.retry_of + " started");
      follow(answer.run_id);
    } catch (e) {
      status("#import-status", "retry refused: " + e.message, true);
    }
  }

  $("#project").addEventListener("change", loadUploads);
  $("#review-button").addEventListener("click", review);
  $("#override").addEventListener("change", refresh);
  $("#import-button").addEventListener("click", importSelection);
  $("#retry-button").addEventListener("click", retry);
  loadUploads().catch((e) => status("#review-status", "uploads unknown: " + e.message, true));
})();
