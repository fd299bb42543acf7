// The maintained upload client of the Data Upload page: Uppy's core, Dashboard and Tus plugin.
// Bundled by `npm run build` into dicomflow/web/static/uploads/uppy-bundle.js; the page's own
// logic (dicomflow/web/static/uploads/uploads.js) uses window.DicomflowUppy.
import Uppy from "@uppy/core";
import Dashboard from "@uppy/dashboard";
import Tus from "@uppy/tus";

window.DicomflowUppy = { Uppy, Dashboard, Tus };
