// The Series page: search box and facet filters over GET /api/series, result cards, paging.
// Every value from a DICOM header is put into the page as text (textContent), never as markup.
(function () {
  "use strict";
  const $ = (sel) => document.querySelector(sel);
  const { F, el, text, seriesLabel, status, api, validationBadge, storingBadge } = window.dicomflowSeries;
  const DEFAULT_PAGE_SIZE = 24;
  // Filters whose form field has the query parameter's name.
  const FILTERS = [
    "q", "dataset", "modality", "patient_id", "from", "to", "has_errors", "has_warnings", "validation",
  ];
  const state = { project: "admin", page: 1, size: DEFAULT_PAGE_SIZE, seq: 0 };

  function personName(value) {
    return text(value).replace(/\^+/g, " ").trim();
  }

  function filters() {
    const values = {};
    for (const name of FILTERS) {
      const value = $("#" + name).value.trim();
      if (value) values[name] = value;
    }
    return values;
  }

  function queryString(values, extra) {
    const params = new URLSearchParams({ project: state.project, ...values, ...(extra || {}) });
    return params.toString();
  }

  function without(values, name) {
    const copy = { ...values };
    delete copy[name];
    return copy;
  }

  // -- cards --------------------------------------------------------------------------------

  function fallback(modality) {
    return el("div", { class: "fallback" }, modality || "?", el("small", {}, "no thumbnail"));
  }

  function thumbnail(uid, modality) {
    const box = el("div", { class: "thumb" });
    const img = el("img", {
      alt: "thumbnail",
      loading: "lazy",
      src: "/api/series/" + encodeURIComponent(uid) + "/thumbnail?project=" + encodeURIComponent(state.project),
    });
    img.addEventListener("error", () => { box.replaceChildren(fallback(modality)); });
    box.append(img);
    return box;
  }

  function card(doc) {
    const uid = text(doc[F.seriesUid]);
    const modality = text(doc[F.modality]);
    const href = "/series/" + encodeURIComponent(uid) + "?project=" + encodeURIComponent(state.project);
    const patient = [personName(doc[F.patientName]), text(doc[F.patientId])].filter(Boolean).join(" \u00b7 ");
    const study = [text(doc[F.studyDescription]), text(doc[F.studyDate])].filter(Boolean).join(" \u00b7 ");
    const label = seriesLabel(doc);
    const name = label.text || "(no series description)";
    return el("a", { class: "card", href: href, "data-uid": uid },
      thumbnail(uid, modality),
      el("div", {
        class: "line description" + (label.derived ? " derived" : ""),
        title: label.derived ? "no Series Description: " + name : name,
      }, name),
      el("div", { class: "line patient" }, "Patient: " + (patient || "-")),
      el("div", { class: "line study" }, "Study: " + (study || "-")),
      el("div", { class: "line" },
        el("span", { class: "modality" }, modality || "-"), " \u00b7 ",
        el("span", { class: "instances" }, text(doc.instance_count)), " instance(s)"),
      el("div", { class: "line dataset" }, "Dataset: " + (text(doc.dataset) || "-")),
      el("div", { class: "line" }, validationBadge(doc.validation), storingBadge(doc, "storing in PACS")));
  }

  // -- facets -------------------------------------------------------------------------------

  function showFacet(name, counts) {
    const select = $("#" + name);
    const chosen = select.value;
    const values = Object.keys(counts);
    if (chosen && !values.includes(chosen)) values.push(chosen);
    select.replaceChildren(el("option", { value: "" }, "any"));
    const list = $("#facet-" + name);
    list.replaceChildren();
    for (const value of values) {
      const count = counts[value] || 0;
      select.append(el("option", { value: value }, value + " (" + count + ")"));
      const item = el("li", { "data-value": value, class: value === chosen ? "selected" : "" },
        el("span", { class: "value" }, value), el("span", { class: "count" }, count));
      item.addEventListener("click", () => {
        select.value = select.value === value ? "" : value;
        search(1);
      });
      list.append(item);
    }
    select.value = chosen;
  }

  async function facetCounts(values, result) {
    const seq = state.seq;
    const jobs = ["modality", "dataset"].map(async (name) => {
      // A chosen value would hide the others: count them with the other filters only.
      const counts = values[name]
        ? (await api("/api/series?" + queryString(without(values, name), { size: 1 }))).facets[name]
        : result.facets[name];
      return [name, counts || {}];
    });
    const flags = ["has_errors", "has_warnings"].map(async (name) => {
      const answer = await api("/api/series?" + queryString(without(values, name), { [name]: "true", size: 1 }));
      return [name, answer.total];
    });
    const facets = await Promise.all(jobs);
    const flagged = await Promise.all(flags);
    if (seq !== state.seq) return;
    for (const [name, counts] of facets) showFacet(name, counts);
    for (const [name, total] of flagged) {
      $(name === "has_errors" ? "#count-errors" : "#count-warnings").textContent = "(" + total + " with)";
    }
  }

  // -- search -------------------------------------------------------------------------------

  async function search(page) {
    state.page = page || 1;
    const values = filters();
    const seq = ++state.seq;
    const params = queryString(values, { page: state.page, size: state.size });
    const kept = {};
    if (state.page > 1) kept.page = state.page;
    if (state.size !== DEFAULT_PAGE_SIZE) kept.size = state.size;
    history.replaceState(null, "", "/series?" + queryString(values, kept));
    status("searching\u2026");
    let result;
    try {
      result = await api("/api/series?" + params);
    } catch (error) {
      if (seq === state.seq) status(error.message, true);
      return;
    }
    if (seq !== state.seq) return;
    const pages = Math.max(1, Math.ceil(result.total / state.size));
    status(result.total + " series in " + state.project);
    $("#results").replaceChildren(...result.items.map(card));
    $("#page-info").textContent = "page " + result.page + " of " + pages;
    $("#prev-page").disabled = result.page <= 1;
    $("#next-page").disabled = result.page >= pages;
    facetCounts(values, result).catch((error) => status(error.message, true));
  }

  async function loadDatasets() {
    const datasets = await api("/api/projects/" + encodeURIComponent(state.project) + "/datasets");
    const select = $("#dataset");
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "any"));
    for (const d of datasets) select.append(el("option", { value: d.name }, d.name + " (" + d.series + ")"));
    select.value = datasets.some((d) => d.name === chosen) ? chosen : "";
  }

  function listen() {
    const select = $("#project");
    select.addEventListener("change", async () => {
      state.project = select.value;
      $("#dataset").value = "";
      await loadDatasets();
      search(1);
    });
    for (const name of ["dataset", "modality", "has_errors", "has_warnings", "validation", "from", "to"]) {
      $("#" + name).addEventListener("change", () => search(1));
    }
    $("#filters").addEventListener("submit", (event) => { event.preventDefault(); search(1); });
    $("#reset-button").addEventListener("click", () => {
      for (const name of FILTERS) $("#" + name).value = "";
      search(1);
    });
    $("#prev-page").addEventListener("click", () => search(state.page - 1));
    $("#next-page").addEventListener("click", () => search(state.page + 1));
  }

  async function start() {
    const initial = new URLSearchParams(location.search);
    const size = Number(initial.get("size"));
    if (Number.isInteger(size) && size >= 1 && size <= 1000) state.size = size;
    // The projects this user may read (admin, which holds every series, for administrators).
    const projects = await api("/api/projects");
    const names = projects.map((p) => p.name);
    if (!names.length) throw new Error("you are a member of no project yet: ask a project's owner or an administrator");
    const select = $("#project");
    for (const name of names) select.append(el("option", { value: name }, name));
    const fallback = names.includes("admin") ? "admin" : names[0];
    state.project = names.includes(initial.get("project")) ? initial.get("project") : fallback;
    select.value = state.project;
    // The address keeps the filters (back from a series comes back to the same search).
    for (const name of FILTERS) {
      const value = initial.get(name);
      if (value === null) continue;
      const field = $("#" + name);
      if (field.tagName === "SELECT" && ![...field.options].some((o) => o.value === value)) {
        field.append(el("option", { value: value }, value));
      }
      field.value = value;
    }
    // Listening before the next wait: a choice made meanwhile is not lost.
    listen();
    await loadDatasets();
    await search(Number(initial.get("page")) || 1);
  }

  start().catch((error) => status(error.message, true));
})();
