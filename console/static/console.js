// envgrid operator console: live alert list (polls /console/live every 2 s; the server answers
// 304 when nothing changed), filters without a reload, relative times. Everything works
// without this script too: the filters are a plain GET form, and a reload shows the news.
"use strict";
(() => {
  const zh = document.documentElement.lang.startsWith("zh");
  const baseTitle = document.title;

  function ago(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (!isFinite(s)) return "";
    if (s < 60) return zh ? `${Math.round(s)} 秒前` : `${Math.round(s)} s ago`;
    if (s < 3600) return zh ? `${Math.round(s / 60)} 分钟前` : `${Math.round(s / 60)} min ago`;
    if (s < 172800) return zh ? `${(s / 3600).toFixed(1)} 小时前` : `${(s / 3600).toFixed(1)} h ago`;
    return zh ? `${Math.round(s / 86400)} 天前` : `${Math.round(s / 86400)} d ago`;
  }

  function relTimes(root) {
    root.querySelectorAll("time[data-rel]").forEach((el) => {
      let span = el.nextElementSibling;
      if (!span || !span.classList.contains("rel")) {
        span = document.createElement("span");
        span.className = "rel sub";
        el.after(span);
      }
      const text = ago(el.dateTime);
      span.textContent = text ? ` (${text})` : "";
    });
  }
  relTimes(document);

  const live = document.getElementById("live");
  const form = document.getElementById("filters");
  let etag = live ? live.dataset.etag || "" : "";
  let timer = 0;
  let inflight = false;
  let ok = true;

  function title() {
    const sec = live && live.querySelector("[data-active]");
    const n = sec ? Number(sec.dataset.active) : 0;
    document.title = n > 0 ? `(${n}) ${baseTitle}` : baseTitle;
  }

  function setOk(now) {
    if (now === ok) return;  // the status region only speaks when the connection changes
    ok = now;
    const state = document.getElementById("live-state");
    if (!state) return;
    state.textContent = now ? live.dataset.ok : live.dataset.lost;
    state.className = now ? "live-ok" : "live-lost";
  }

  async function poll() {
    clearTimeout(timer);
    if (inflight) return;
    inflight = true;
    try {
      const headers = etag ? { "If-None-Match": etag } : {};
      const r = await fetch(live.dataset.src + location.search, {
        headers, cache: "no-store", credentials: "same-origin",
      });
      if (r.status === 401) {
        location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      if (r.status === 200) {
        const html = await r.text();
        const active = document.activeElement;
        const focusId = active && live.contains(active) ? active.id : "";
        live.innerHTML = html;
        etag = r.headers.get("ETag") || "";
        if (focusId) {
          const el = document.getElementById(focusId);
          if (el) el.focus();  // keyboard users keep their place across updates
        }
        title();
      } else if (r.status !== 304) {
        throw new Error(String(r.status));
      }
      setOk(true);
      const upd = document.getElementById("live-updated");
      if (upd) upd.textContent = new Date().toLocaleTimeString(zh ? "zh-CN" : "en-GB");
    } catch (e) {
      setOk(false);
    } finally {
      inflight = false;
      relTimes(live);
      timer = setTimeout(poll, 2000);
    }
  }

  if (form) {
    form.addEventListener("change", () => {
      const q = new URLSearchParams(new FormData(form));
      for (const [k, v] of [...q.entries()]) if (!v) q.delete(k);
      const s = q.toString();
      history.replaceState(null, "", s ? `?${s}` : location.pathname);
      if (live) { etag = ""; poll(); }
    });
  }
  if (live) {
    title();
    timer = setTimeout(poll, 2000);
  } else {
    setInterval(() => relTimes(document), 15000);
  }
})();
