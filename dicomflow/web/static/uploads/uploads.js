// The Data Upload page: Uppy (Dashboard + Tus) for resumable uploads, the uploads area,
// and the import form. Talks only to this web service's /api/uploads and /api/imports.
(function () {
  "use strict";
  const { Uppy, Dashboard, Tus } = window.DicomflowUppy;
  const $ = (sel) => document.querySelector(sel);
  const state = { config: null, project: null, uppy: null };

  // The session's CSRF token goes with every state-changing request of the page; sizes are
  // in the binary units the limits use (they come from the server, exact, as
  // config.limits.labels).
  const { CSRF, api, status, bytes } = window.dicomflow;

  // -- resumable uploads ------------------------------------------------------------------

  function storedSession(project) {
    try { return JSON.parse(localStorage.getItem("dicomflow-upload:" + project) || "null"); }
    catch (e) { return null; }
  }

  function filePath(file) {
    return (file.meta.relativePath || file.name).replace(/^\/+/, "");
  }

  async function announce(fileIDs) {
    const uppy = state.uppy;
    const project = state.project;
    const files = fileIDs.map((id) => uppy.getFile(id));
    const wanted = files.map((f) => ({ path: filePath(f), size: f.size }));
    // The same files after a reload or a failure: keep the upload id, so that the tus
    // client finds its earlier uploads (the endpoint is part of its fingerprint) and resumes.
    let session = storedSession(project);
    const same = session && wanted.every((f) => session.files[f.path] === f.size);
    if (!same) {
      const answer = await api("POST", "/api/uploads/" + encodeURIComponent(project), { files: wanted });
      session = { upload_id: answer.upload_id, files: Object.fromEntries(wanted.map((f) => [f.path, f.size])) };
      localStorage.setItem("dicomflow-upload:" + project, JSON.stringify(session));
    }
    uppy.getPlugin("Tus").setOptions({ endpoint: state.config.tus_endpoint + "?upload=" + session.upload_id });
    for (const f of files) {
      uppy.setFileMeta(f.id, { upload_id: session.upload_id, project: project, path: filePath(f) });
    }
    state.uploadId = session.upload_id;
    status("#upload-status", "upload " + session.upload_id + ": sending " + files.length + " files");
  }

  function makeUppy() {
    const limits = state.config.limits;
    const labels = limits.labels;
    const uppy = new Uppy({
      autoProceed: false,
      restrictions: {
        maxFileSize: limits.max_file_bytes,
        maxTotalFileSize: limits.max_upload_bytes,
        maxNumberOfFiles: limits.max_files,
      },
      // Uppy writes sizes in binary amounts with decimal names ("100 GB" for 100 GiB): its
      // refusals name the limit as configured instead.
      locale: {
        strings: {
          exceedsSize: "%{file} exceeds the limit of " + labels.max_file_bytes +
            " per file (uploads.max_file_bytes)",
          aggregateExceedsSize: "the selected files exceed the limit of " + labels.max_upload_bytes +
            " per upload (uploads.max_upload_bytes)",
        },
      },
    });
    uppy.use(Dashboard, {
      inline: true,
      target: "#dashboard",
      height: 360,
      width: "100%",
      fileManagerSelectionType: "both",
      proudlyDisplayPoweredByUppy: false,
      showProgressDetails: true,
      note: "files and folders; limits: " + labels.max_file_bytes + " per file, " +
        labels.max_upload_bytes + " and " + labels.max_files + " files per upload",
    });
    uppy.use(Tus, {
      endpoint: state.config.tus_endpoint,
      chunkSize: state.config.chunk_bytes,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      allowedMetaFields: ["upload_id", "project", "path", "name", "type"],
      headers: CSRF,
      limit: 4,
    });
    uppy.addPreProcessor(async (fileIDs) => {
      try {
        await announce(fileIDs);
      } catch (error) {
        status("#upload-status", "upload refused: " + error.message, true);
        uppy.info(error.message, "error", 10000);
        throw error;
      }
    });
    uppy.on("restriction-failed", (file, error) => {
      status("#upload-status", "file refused: " + error.message, true);
    });
    uppy.on("upload-error", (file, error) => {
      status("#upload-status", (file ? file.name + ": " : "") + error.message, true);
    });
    uppy.on("complete", async (result) => {
      if (!state.uploadId) return;
      const check = await api("POST", "/api/uploads/" + encodeURIComponent(state.project) + "/" + state.uploadId + "/complete");
      if (check.complete && result.failed.length === 0) {
        localStorage.removeItem("dicomflow-upload:" + state.project);
        status("#upload-status", "upload " + check.upload_id + " complete: " + result.successful.length + " files");
      } else {
        status("#upload-status", "upload " + check.upload_id + " incomplete; missing: " + check.missing.join(", ") + " (add the same files again to resume)", true);
      }
      await refreshUploads(check.upload_id);
    });
    return uppy;
  }

  // -- the uploads area -------------------------------------------------------------------

  async function refreshUploads(select) {
    const project = state.project;
    const data = await api("GET", "/api/uploads/" + encodeURIComponent(project));
    const body = $("#uploads-table tbody");
    body.textContent = "";
    for (const entry of data.entries) {
      const row = document.createElement("tr");
      row.dataset.name = entry.name;
      const check = document.createElement("input");
      check.type = "checkbox";
      check.value = entry.name;
      check.checked = select === entry.upload_id;
      const del = document.createElement("button");
      del.textContent = "delete";
      del.className = "delete";
      del.addEventListener("click", async () => {
        if (!window.confirm("Delete " + entry.name + "?")) return;
        await api("DELETE", "/api/uploads/" + encodeURIComponent(project) + "/" + entry.name.split("/").map(encodeURIComponent).join("/"));
        await refreshUploads();
      });
      const cells = [check, entry.name, bytes(entry.size), entry.uploaded_at, entry.user, del];
      cells.forEach((value, i) => {
        const cell = document.createElement("td");
        if (i === 2) cell.className = "size";
        if (value instanceof Node) cell.appendChild(value); else cell.textContent = value;
        row.appendChild(cell);
      });
      body.appendChild(row);
    }
    $("#uploads-total").textContent = data.entries.length + " files, " + bytes(data.total_bytes);
  }

  // -- imports ----------------------------------------------------------------------------

  function selectedUploads() {
    return Array.from(document.querySelectorAll("#uploads-table tbody input:checked")).map((c) => c.value);
  }

  function showReport(report, lines) {
    $("#report").hidden = false;
    $("#report-outcome").textContent = "(" + report.outcome + ")";
    const body = $("#series-table tbody");
    body.textContent = "";
    for (const s of report.series) {
      const row = document.createElement("tr");
      for (const value of [s.series_instance_uid, s.modality, s.description, s.instances]) {
        const cell = document.createElement("td");
        cell.textContent = value;
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
    $("#report-text").textContent = lines.join("\n");
  }

  async function follow(project, runId) {
    for (;;) {
      const run = await api("GET", "/api/imports/" + encodeURIComponent(project) + "/" + encodeURIComponent(runId));
      if (run.report) showReport(run.report, run.report_lines);
      if (run.state === "success" || run.state === "failed") {
        status("#import-status", "import " + runId + ": " + run.state + (run.report ? " (" + run.report.outcome + ")" : ""), run.state !== "success");
        await refreshUploads();
        return;
      }
      status("#import-status", "import " + runId + ": " + run.state + " ...");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  async function startImport(event) {
    event.preventDefault();
    const uploads = selectedUploads();
    if (!uploads.length) {
      status("#import-status", "select the uploaded files to import", true);
      return;
    }
    $("#report").hidden = true;
    try {
      const answer = await api("POST", "/api/imports", {
        project: state.project,
        dataset: $("#dataset").value.trim(),
        uploads: uploads,
        kind: $("#kind").value,
        extension: $("#extension").value.trim(),
        modality: $("#modality").value,
        delete_upload: $("#delete-upload").checked,
      });
      status("#import-status", "import " + answer.run_id + " started");
      await follow(state.project, answer.run_id);
    } catch (error) {
      status("#import-status", "import refused: " + error.message, true);
    }
  }

  // -- start ------------------------------------------------------------------------------

  async function setProject(project) {
    state.project = project;
    document.querySelectorAll(".project-name").forEach((el) => { el.textContent = project; });
    await refreshUploads();
  }

  async function main() {
    state.config = await api("GET", "/api/uploads/config");
    const select = $("#project");
    for (const name of state.config.projects) {
      const option = document.createElement("option");
      option.value = option.textContent = name;
      select.appendChild(option);
    }
    const l = state.config.limits.labels;
    $("#limits").textContent = "limits: " + l.max_file_bytes + " per file, " + l.max_upload_bytes + " per upload, " + l.max_files + " files";
    select.addEventListener("change", () => setProject(select.value));
    $("#import-form").addEventListener("submit", startImport);
    $("#kind").addEventListener("change", () => {
      const nifti = $("#kind").value === "nifti";
      $("#dicom-options").hidden = nifti;
      $("#nifti-options").hidden = !nifti;
    });
    state.uppy = makeUppy();
    window.dicomflowUppy = state.uppy;
    await setProject(select.value);
  }

  main().catch((error) => status("#upload-status", "the page could not start: " + error.message, true));
})();
