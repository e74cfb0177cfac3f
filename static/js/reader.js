// The reading page: keyboard answers, zoom and pan, window/level, grey-scale inversion, full
// screen, and the reading time.
// Loaded with <script defer>; the CSP forbids inline code. Everything is bound to
// #reading-panel, which htmx replaces after every answer, so binding happens again on htmx:load.
// An answer whose request fails in transit or gets 500/502/503/504 is sent again with backoff
// (the server stores an identical resubmit once), showing "Saving…" until it is in.
(() => {
  "use strict";

  const ANSWER_KEYS = { r: "real", f: "fake", u: "uncertain" };
  const MAX_SCALE = 8;
  const IDENTITY = { level: 127.5, width: 255 }; // lo = 0, hi = 255: pixels unchanged
  const RETRY_STATUS = new Set([500, 502, 503, 504]);
  const MAX_RETRIES = 6; // about 25 s of backoff in all, then the reader decides
  let st = null; // the panel now shown and its viewer state
  // The reader's own display choice, kept across images (each answer swaps the panel) and
  // reloads. A CSS filter on the shown image: the served bytes never change.
  const INVERT_KEY = "synthbench.reader.invert";
  let inverted = false;
  try { inverted = sessionStorage.getItem(INVERT_KEY) === "true"; } catch (_) { /* storage off */ }

  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const checked = (form, name) => {
    const input = form.querySelector(`input[name="${name}"]:checked`);
    return input ? input.value : "";
  };

  function bindFrom(root) {
    const panel = root.id === "reading-panel" ? root : root.querySelector && root.querySelector("#reading-panel");
    if (panel) bind(panel);
  }

  function bind(panel) {
    if (!panel || panel.dataset.bound) return;
    panel.dataset.bound = "true";
    if (st && st.timer) clearTimeout(st.timer);
    if (st && st.retryTimer) clearTimeout(st.retryTimer);
    st = null;
    if (panel.dataset.state !== "reading") return;
    const q = (sel) => panel.querySelector(sel);
    const s = {
      panel, form: q("#answer-form"), viewer: q("#viewer"), stage: q(".stage"),
      img: q("#reading-image"), canvas: q("#wl-canvas"), readout: q("#wl-readout"),
      range: q("#confidence"), scale: 1, tx: 0, ty: 0, ...IDENTITY, source: null, ctx: null,
      loadedAt: null, timer: null, drag: null, pending: false,
      saving: false, tries: 0, retryTimer: null, retrying: false,
    };
    st = s;
    // Reading time starts when the pixels are there, not when the request was sent.
    const loaded = () => {
      if (s.loadedAt !== null) return;
      s.loadedAt = performance.now();
      const limit = Number(panel.dataset.timeLimitS || 0);
      if (limit > 0) {
        s.timer = setTimeout(() => {
          s.viewer.classList.add("timed-out");
          q("#time-up").hidden = false;
        }, limit * 1000);
      }
    };
    if (s.img.complete && s.img.naturalWidth) loaded();
    else s.img.addEventListener("load", loaded, { once: true });

    s.form.addEventListener("change", (e) => {
      if (e.target.name === "answer" || e.target.name === "confidence") updateReason(s, true);
    });
    // The slider starts untouched and sends nothing: a default of 50 would be a silent answer.
    s.range?.addEventListener("input", () => {
      q("#confidence-value").value = q("#confidence-output").textContent = s.range.value;
      s.range.dataset.untouched = "false";
    });
    q("#zoom-toggle").addEventListener("click", () => toggleZoom(s));
    q("#view-reset").addEventListener("click", () => resetView(s));
    q("#invert-toggle").addEventListener("click", () => setInverted(s, !inverted));
    q("#fullscreen-toggle").addEventListener("click", () => toggleFullscreen());
    setInverted(s, inverted);
    showFullscreen();
    bindViewer(s);
  }

  function setInverted(s, on) {
    inverted = on;
    try { sessionStorage.setItem(INVERT_KEY, String(on)); } catch (_) { /* storage off */ }
    s.stage.classList.toggle("inverted", on);
    s.panel.querySelector("#invert-toggle").setAttribute("aria-pressed", String(on));
  }

  // Full screen holds <main>, not the panel: htmx replaces the panel after every answer, and
  // a replaced full-screen element would drop the reader out of full screen each time.
  function toggleFullscreen() {
    const main = document.querySelector("main");
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else if (main && main.requestFullscreen) main.requestFullscreen().catch(() => {});
  }

  function showFullscreen() {
    const button = document.querySelector("#fullscreen-toggle");
    if (button) button.setAttribute("aria-pressed", String(Boolean(document.fullscreenElement)));
    if (st) apply(st); // the viewer changed size: keep the zoomed image covering it
  }
  document.addEventListener("fullscreenchange", showFullscreen);

  function confidenceSet(s) {
    const scale = s.panel.dataset.confidenceScale;
    if (scale === "1-5") return checked(s.form, "confidence") !== "";
    if (scale === "0-100") return s.form.querySelector("#confidence-value").value !== "";
    return true;
  }

  // The reason box exists only when the study asks for reasons; it opens for fake/uncertain.
  function updateReason(s, focus) {
    const box = s.panel.querySelector("#reason-box");
    if (!box) return;
    const answer = checked(s.form, "answer");
    const needed = answer === "fake" || answer === "uncertain";
    const text = box.querySelector("textarea");
    box.hidden = !needed;
    text.disabled = !needed; // a disabled field is not sent: no stale reason for "real"
    // Focus only once confidence is set, so digit keys are not typed into the reason.
    if (needed && focus && confidenceSet(s) && !text.value.trim()) text.focus();
  }

  function choose(s, name, value) {
    if (s.saving) return; // the answer being saved must stay the one sent again
    const input = s.form.querySelector(`input[name="${name}"][value="${value}"]`);
    if (input) { input.checked = true; updateReason(s, true); }
  }

  function problem(s) {
    const answers = [...s.form.querySelectorAll('input[name="answer"]')];
    if (!answers.some((a) => a.checked)) {
      const keys = answers.map((a) => a.value[0].toUpperCase()).join(", ");
      return `Choose an answer first (${keys}).`;
    }
    if (!confidenceSet(s)) {
      return s.range ? "Set your confidence (press C, then the arrow keys)." : "Set your confidence (1 to 5).";
    }
    const text = s.panel.querySelector("#reason-box:not([hidden]) textarea");
    if (text && !text.value.trim()) {
      text.focus();
      return "Please say briefly why.";
    }
    const second = s.panel.querySelector("#second-question");
    if (second && checked(s.form, "second_answer") === "") return "Please answer the second question too.";
    return "";
  }

  const showError = (s, message) => { s.panel.querySelector("#answer-error").textContent = message; };

  // text null: not saving. While saving, the form is locked (read-only, not disabled: disabled
  // fields are not sent) so that a retry sends exactly what the reader submitted.
  function setSaving(s, text) {
    const box = s.panel.querySelector("#save-state");
    s.saving = text !== null;
    s.form.classList.toggle("saving", s.saving);
    s.form.setAttribute("aria-busy", String(s.saving));
    const reason = s.form.querySelector("textarea");
    if (reason) reason.readOnly = s.saving;
    box.hidden = !s.saving;
    box.textContent = text || "";
  }

  function retryDelayMs(tries, retryAfter) {
    const base = Math.min(8000, 500 * 2 ** tries);
    const asked = Math.min(10, Number(retryAfter) || 0) * 1000;
    // Jitter: readers whose answers failed together must not all come back in the same instant.
    return Math.max(base, asked) * (0.75 + Math.random() * 0.5);
  }

  function retryOrGiveUp(s, why, retryAfter) {
    if (s.tries >= MAX_RETRIES) {
      setSaving(s, null);
      showError(s, `Your answer was not saved: ${why}. It is still selected; press Enter to try again.`);
      return;
    }
    const delay = retryDelayMs(s.tries, retryAfter);
    s.tries += 1;
    setSaving(s, `Saving… ${why}; trying again in ${Math.ceil(delay / 1000)} s.`);
    s.retryTimer = setTimeout(() => {
      s.retryTimer = null;
      if (!s.panel.isConnected) return;
      s.retrying = true;
      s.form.requestSubmit();
    }, delay);
  }

  // Viewer: zoom and pan are a CSS transform on the stage; window/level redraws a canvas copy.
  function apply(s) {
    const [w, h] = [s.viewer.clientWidth, s.viewer.clientHeight];
    // Keep the zoomed image covering the viewer: no panning off into black.
    s.tx = clamp(s.tx, w - w * s.scale, 0);
    s.ty = clamp(s.ty, h - h * s.scale, 0);
    s.stage.style.transform = `translate(${s.tx}px, ${s.ty}px) scale(${s.scale})`;
  }

  function zoomAt(s, factor, x, y) {
    const next = clamp(s.scale * factor, 1, MAX_SCALE);
    s.tx = x - (x - s.tx) * (next / s.scale);
    s.ty = y - (y - s.ty) * (next / s.scale);
    s.scale = next;
    apply(s);
  }

  function toggleZoom(s) {
    if (s.scale > 1) zoomAt(s, 1 / s.scale, 0, 0);
    else zoomAt(s, 2, s.viewer.clientWidth / 2, s.viewer.clientHeight / 2);
  }

  function renderWindow(s) {
    s.pending = false;
    if (!s.source) {
      if (!s.img.complete || !s.img.naturalWidth) return;
      [s.canvas.width, s.canvas.height] = [s.img.naturalWidth, s.img.naturalHeight];
      s.ctx = s.canvas.getContext("2d", { willReadFrequently: true });
      s.ctx.drawImage(s.img, 0, 0);
      s.source = s.ctx.getImageData(0, 0, s.canvas.width, s.canvas.height);
    }
    // Level/width remap of the 8-bit grey values; the clamped array clips to 0..255.
    const lo = s.level - s.width / 2;
    const lut = new Uint8ClampedArray(256);
    for (let v = 0; v < 256; v++) lut[v] = ((v - lo) / s.width) * 255;
    const [src, out] = [s.source.data, s.ctx.createImageData(s.source)];
    const o = out.data;
    for (let i = 0; i < src.length; i += 4) {
      o[i] = o[i + 1] = o[i + 2] = lut[src[i]];
      o[i + 3] = 255;
    }
    s.ctx.putImageData(out, 0, 0);
    s.canvas.hidden = false;
    s.img.classList.add("hidden-by-wl");
    s.readout.textContent = `W ${Math.round(s.width)} · L ${Math.round(s.level)}`;
  }

  function resetView(s) {
    s.scale = 1;
    Object.assign(s, IDENTITY);
    apply(s);
    s.canvas.hidden = true;
    s.img.classList.remove("hidden-by-wl");
    s.readout.textContent = "";
  }

  function bindViewer(s) {
    const v = s.viewer;
    v.addEventListener("contextmenu", (e) => e.preventDefault()); // right-drag is window/level
    v.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = v.getBoundingClientRect();
      zoomAt(s, Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    v.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 && e.button !== 2) return;
      const windowing = e.button === 2 || wHeld;
      e.preventDefault();
      v.setPointerCapture(e.pointerId);
      s.drag = { windowing, x: e.clientX, y: e.clientY, tx: s.tx, ty: s.ty, level: s.level, width: s.width };
      v.classList.add(windowing ? "windowing" : "dragging");
    });
    v.addEventListener("pointermove", (e) => {
      const d = s.drag;
      if (!d) return;
      const [dx, dy] = [e.clientX - d.x, e.clientY - d.y];
      if (d.windowing) {
        // Right widens the window (less contrast); down raises the level (darker).
        s.width = clamp(d.width + dx, 1, 512);
        s.level = clamp(d.level + dy, 0, 255);
        if (!s.pending) requestAnimationFrame(() => renderWindow(s));
        s.pending = true;
      } else {
        [s.tx, s.ty] = [d.tx + dx, d.ty + dy];
        apply(s);
      }
    });
    const end = () => { s.drag = null; v.classList.remove("dragging", "windowing"); };
    ["pointerup", "pointercancel"].forEach((type) => v.addEventListener(type, end));
  }

  // Document-level handlers, bound once: they act on whichever panel is current.
  let wHeld = false;

  // htmx fires htmx:load only when the swap settles (~20 ms later); a key pressed in between
  // must reach the new panel, not the detached old one.
  function current() {
    if (!st || !st.panel.isConnected) bindFrom(document);
    return st && st.panel.isConnected ? st : null;
  }

  document.addEventListener("keydown", (e) => {
    const s = current();
    if (!s || e.altKey || e.metaKey) return;
    const t = e.target;
    const typing = t.matches && t.matches("textarea, input[type=text]");
    if (e.key === "Enter") {
      if (typing && !e.ctrlKey) return; // a new line in the reason
      if (s.saving) { e.preventDefault(); return; } // already on its way
      if (t.matches && t.matches("button, a, summary")) return; // their own activation
      e.preventDefault(); // no implicit submission on top of ours
      s.form.requestSubmit(); // validation and htmx both see a normal submit
      return;
    }
    if (typing) {
      if (e.key === "Escape") t.blur();
      return;
    }
    if (e.ctrlKey) return;
    const key = e.key.toLowerCase();
    if (ANSWER_KEYS[key]) {
      e.preventDefault();
      choose(s, "answer", ANSWER_KEYS[key]);
    } else if (/^[1-5]$/.test(key) && s.panel.dataset.confidenceScale === "1-5") {
      e.preventDefault();
      choose(s, "confidence", key);
    } else if (key === "c" && s.range) {
      e.preventDefault();
      s.range.focus();
    } else if (key === "z") {
      toggleZoom(s);
    } else if (key === "x") {
      resetView(s);
    } else if (key === "i") {
      setInverted(s, !inverted);
    } else if (key === "g") {
      toggleFullscreen();
    } else if (key === "w") {
      wHeld = true;
    }
  });
  document.addEventListener("keyup", (e) => { if (e.key.toLowerCase() === "w") wHeld = false; });
  window.addEventListener("blur", () => { wHeld = false; });

  // Capture phase: runs before htmx's own submit listener on the form, so an incomplete answer
  // never leaves the browser and the duration is in the form when htmx reads it.
  document.addEventListener("submit", (e) => {
    const s = current();
    if (!s || e.target !== s.form) return;
    const message = problem(s);
    if (message) {
      e.preventDefault();
      e.stopPropagation();
      showError(s, message);
      return;
    }
    if (s.loadedAt !== null) s.form.querySelector("#duration-ms").value = Math.round(performance.now() - s.loadedAt);
    // The reader pressing Submit again starts a fresh series of tries; a scheduled retry does not.
    if (s.retryTimer) { clearTimeout(s.retryTimer); s.retryTimer = null; }
    if (!s.retrying) s.tries = 0;
    s.retrying = false;
  }, true);

  document.addEventListener("htmx:beforeRequest", (e) => {
    const s = st;
    if (!s || e.detail.elt !== s.form) return;
    showError(s, "");
    setSaving(s, "Saving…");
  });

  // Our 4xx answers carry HX-Retarget to the error slot and are meant to be shown; any other
  // failure (expired form token, server error) gets its message pulled out of the error page.
  document.addEventListener("htmx:beforeSwap", (e) => {
    const s = st;
    const xhr = e.detail.xhr;
    if (!s || !s.panel.contains(e.detail.elt)) return;
    if (xhr.status < 400) {
      // htmx copies style attributes onto same-id elements of the new panel; under our CSP
      // that is a blocked inline style. Drop them: the new image starts unzoomed anyway.
      s.panel.querySelectorAll("[style]").forEach((el) => el.removeAttribute("style"));
      return;
    }
    e.detail.isError = false;
    if (RETRY_STATUS.has(xhr.status)) {
      e.detail.shouldSwap = false;
      retryOrGiveUp(s, `the server is busy (error ${xhr.status})`, xhr.getResponseHeader("Retry-After"));
      return;
    }
    setSaving(s, null);
    if (xhr.status < 500 && xhr.getResponseHeader("HX-Retarget")) {
      e.detail.shouldSwap = true;
      return;
    }
    e.detail.shouldSwap = false;
    const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
    const found = page.querySelector(".error-message");
    showError(s, (found && found.textContent.trim()) || `Your answer was not saved (error ${xhr.status}). Reload the page and try again.`);
  });
  const unreachable = (e) => {
    if (st && e.detail.elt === st.form) retryOrGiveUp(st, "the server could not be reached");
  };
  document.addEventListener("htmx:sendError", unreachable);
  document.addEventListener("htmx:timeout", unreachable);

  document.addEventListener("htmx:load", (e) => bindFrom(e.target));
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => bindFrom(document));
  } else {
    bindFrom(document);
  }
})();
