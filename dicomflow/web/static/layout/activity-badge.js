// The header's badge: how many imports of the user's projects run and how many failed
// (GET /api/activity/badge, every 10 s). Hidden while both are zero.
(function () {
  "use strict";
  const badge = document.querySelector("#activity-badge");
  if (!badge) return;
  async function refresh() {
    try {
      const response = await fetch("/api/activity/badge", { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const counts = await response.json();
      const parts = [];
      if (counts.running) parts.push(counts.running + " running");
      if (counts.failed) parts.push(counts.failed + " failed");
      badge.textContent = parts.join(" \u00b7 ");
      badge.classList.toggle("failed", counts.failed > 0);
      badge.hidden = parts.length === 0;
    } catch (error) {
      // The next refresh tries again.
    }
  }
  refresh();
  setInterval(refresh, 10000);
})();
