// relive web UI: the only script the pages load (the Content-Security-Policy
// allows no other). Text from the server is put into the page with
// textContent; HTML fragments come from the server, which escapes them.
"use strict";

(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const page = document.body.dataset.page || "";

  // Times: the browser's zone, UTC on hover (the title the server wrote).
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      const d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      const pad = function (n, w) { return String(n).padStart(w || 2, "0"); };
      t.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
        pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) +
        (d.getMilliseconds() ? "." + pad(d.getMilliseconds(), 3) : "");
      t.classList.add("local");
    });
  }

  function say(message) {
    const live = document.getElementById("live");
    if (live) live.textContent = message;
  }

  async function fragment(url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    return r.text();
  }

  function withParam(url, key, value) {
    const u = new URL(url, location.href);
    u.searchParams.set(key, value);
    return u.pathname + u.search;
  }

  async function refresh(id, url) {
    const el = document.getElementById(id);
    if (!el) return;
    el.innerHTML = await fragment(url);
    localTimes(el);
  }

  function stream(onChange) {
    if (!window.EventSource) return;
    const es = new EventSource("/api/v1/stream");
    ["opened", "updated", "resolved", "actions", "lagged"].forEach(function (kind) {
      es.addEventListener(kind, function (e) {
        let data = {};
        try { data = JSON.parse(e.data); } catch (_) { /* a keep-alive */ }
        onChange(kind, data);
      });
    });
    document.body.dataset.stream = "connecting";
    es.addEventListener("open", function () { document.body.dataset.stream = "open"; });
  }

  async function post(url, body) {
    const r = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await r.json(); } catch (_) { /* not JSON */ }
    if (!r.ok) throw new Error(data.error || (r.status + " " + r.statusText));
    return data;
  }

  localTimes(document);

  if (page === "incidents") {
    stream(async function (kind, data) {
      if (kind === "actions") return;
      await refresh("incident-rows", withParam(location.href, "partial", "rows"));
      const i = data.incident;
      if (kind === "opened" && i) {
        say("New incident: " + i.root_cause + " on " + (i.vm_name || i.vm_id || "?"));
        const row = document.querySelector('#incident-rows tr[data-id="' + CSS.escape(i.id) + '"]');
        if (row) row.classList.add("new");
      } else if (i) {
        say("Incident " + kind + ": " + i.root_cause + " on " + (i.vm_name || i.vm_id || "?"));
      }
    });
  }

  if (page === "incident") {
    const main = document.querySelector("main[data-incident]");
    const id = main ? main.dataset.incident : "";
    const sections = async function () {
      await refresh("plan", withParam(location.href, "partial", "plan"));
      await refresh("audit", withParam(location.href, "partial", "audit"));
    };
    stream(async function (kind, data) {
      const about = kind === "actions" ? data.incident : (data.incident && data.incident.id);
      if (about !== id && kind !== "lagged") return;
      if (kind === "actions") {
        await sections();
        say("The plan changed.");
      } else {
        // New evidence or a resolution: the whole page, details closed.
        const html = await fragment(location.pathname);
        const doc = new DOMParser().parseFromString(html, "text/html");
        const fresh = doc.querySelector("main[data-incident]");
        if (fresh && main) { main.replaceChildren(...fresh.childNodes); localTimes(main); }
        say("Incident " + kind + ".");
      }
    });
    document.addEventListener("click", async function (e) {
      const b = e.target.closest("button.approve, button.reject");
      if (!b) return;
      const verb = b.classList.contains("approve") ? "approve" : "reject";
      b.disabled = true;
      try {
        await post("/api/v1/actions/" + encodeURIComponent(b.dataset.key) + "/" + verb, { incident: b.dataset.incident });
        say((verb === "approve" ? "Approved " : "Rejected ") + b.dataset.key);
        await sections();
      } catch (err) {
        say("Could not " + verb + ": " + err.message);
        b.disabled = false;
      }
    });
  }

  if (page === "migrations") {
    const list = document.getElementById("running-list");
    const cell = function (row, value) {
      const td = document.createElement("td");
      td.textContent = value === undefined || value === null ? "" : String(value);
      row.appendChild(td);
    };
    const table = function (head, rows) {
      const t = document.createElement("table");
      const h = t.createTHead().insertRow();
      head.forEach(function (name) { const th = document.createElement("th"); th.scope = "col"; th.textContent = name; h.appendChild(th); });
      const body = t.createTBody();
      rows.forEach(function (values) { const r = body.insertRow(); values.forEach(function (v) { cell(r, v); }); });
      return t;
    };
    async function poll() {
      try {
        const r = await fetch(list.dataset.poll, { credentials: "same-origin" });
        const data = await r.json();
        const parts = [];
        const vms = [];
        (data.hosts || []).forEach(function (h) {
          if (!h.reachable) { vms.push([h.name, "unreachable: " + (h.error || ""), "", "", ""]); return; }
          (h.vms || []).forEach(function (v) { vms.push([h.name, v.name, v.state, v.memory_mib + " MiB", v.counter]); });
        });
        parts.push(table(["Host", "VM", "State", "Memory", "Guest passes"], vms));
        const started = (data.started || []).map(function (m) {
          const p = m.progress || {};
          const ram = p.ram || {};
          return [m.host, m.id, p.status || "?", ram["dirty-sync-count"] !== undefined ? ram["dirty-sync-count"] : (ram.passes || ""),
            ram["dirty-pages-rate"] !== undefined ? ram["dirty-pages-rate"] : "", ram.remaining !== undefined ? ram.remaining : "",
            p["total-time"] !== undefined ? p["total-time"] + " ms" : (p.total_time !== undefined ? p.total_time + " ms" : "")];
        });
        if (started.length) parts.push(table(["Host", "Migration", "Status", "Passes", "Dirty pages/s", "Remaining bytes", "Time"], started));
        list.replaceChildren(...parts);
      } catch (err) {
        list.textContent = "Cannot ask the hosts: " + err.message;
      }
    }
    if (list) { poll(); setInterval(poll, 1000); }
    const form = document.getElementById("start-migration");
    if (form) {
      form.addEventListener("submit", async function (e) {
        e.preventDefault();
        const out = document.getElementById("start-result");
        try {
          const r = await post("/api/v1/migrations", {
            source: form.elements.source.value, vm: form.elements.vm.value, destination: form.elements.destination.value,
          });
          out.textContent = "started " + r.id;
          poll();
        } catch (err) {
          out.textContent = err.message;
        }
      });
    }
  }
})();
