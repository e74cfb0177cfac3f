// Interactive line charts: every element with `data-chart` holds a server-drawn SVG (what a
// browser without script shows) and its data as JSON in that attribute (app/web/line_chart.py,
// templates/macros/charts.html). Here uPlot replaces the SVG with a chart that shows values
// under the cursor, zooms on a drag (double-click resets), smooths noisy curves and switches
// loss-like curves to a log scale. No inline script, no eval: the CSP allows this file as is.
(function () {
  "use strict";

  // Okabe-Ito, as app/web/charts.py: tells series apart under colour-vision deficiencies.
  const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442"];
  const HEIGHT = 260;
  const MAX_POINTS_SHOWN = 60; // beyond this, dots on every point only hide the line
  // Zoom, smoothing and log choices per chart id: a running job's page is swapped by htmx
  // every second, and the reader's view must survive the redraw.
  const kept = new Map();

  function format(v) {
    if (v == null || !Number.isFinite(v)) return "—";
    if (Math.abs(v) >= 1000) return v.toFixed(0);
    return String(Number(v.toPrecision(4)));
  }

  // TensorBoard's smoothing: an exponential moving average, debiased so that the first
  // points are not pulled towards zero. Gaps (null) stay gaps.
  function smooth(ys, weight) {
    if (!weight) return ys.slice();
    let last = 0;
    let n = 0;
    return ys.map(function (y) {
      if (y == null) return null;
      last = last * weight + (1 - weight) * y;
      n += 1;
      return last / (1 - Math.pow(weight, n));
    });
  }

  function normalise(spec) {
    // The Jinja macro may pass a mapping of name to points; the Python helper a list.
    let series = spec.series || [];
    if (!Array.isArray(series)) {
      series = Object.keys(series).map(function (name) {
        return { name: name, points: series[name] };
      });
    }
    return series.map(function (s, j) {
      return {
        name: String(s.name),
        colour: s.colour || PALETTE[j % PALETTE.length],
        points: (s.points || []).filter(function (p) {
          return Number.isFinite(p[0]) && Number.isFinite(p[1]);
        }),
        intervals: s.intervals || [],
      };
    });
  }

  // uPlot wants one x array shared by every series: the union of the runs' x values, with
  // null where a run has no point (drawn across, since spanGaps is on).
  function align(series) {
    const seen = new Set();
    series.forEach(function (s) {
      s.points.forEach(function (p) { seen.add(p[0]); });
    });
    const xs = Array.from(seen).sort(function (a, b) { return a - b; });
    const at = new Map(xs.map(function (x, i) { return [x, i]; }));
    const column = function () { return xs.map(function () { return null; }); };
    const ys = series.map(function (s) {
      const col = column();
      s.points.forEach(function (p) { col[at.get(p[0])] = p[1]; });
      return col;
    });
    const bars = series.map(function (s) {
      if (!s.intervals.length) return null;
      const low = column();
      const high = column();
      s.intervals.forEach(function (b) {
        const i = at.get(b[0]);
        if (i !== undefined) { low[i] = b[1]; high[i] = b[2]; }
      });
      return { low: low, high: high };
    });
    return { xs: xs, ys: ys, bars: bars };
  }

  function extent(aligned) {
    let lo = Infinity;
    let hi = -Infinity;
    const take = function (v) {
      if (v != null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    };
    aligned.ys.forEach(function (col) { col.forEach(take); });
    aligned.bars.forEach(function (b) {
      if (b) { b.low.forEach(take); b.high.forEach(take); }
    });
    return lo <= hi ? [lo, hi] : null;
  }

  // The y range: the data (and its intervals) padded, but never past the metric's natural
  // range (AUC and p in [0, 1], FID and epsilon at least 0) when the data lie inside it.
  function yRange(bounds, aligned, mode) {
    return function (u, min, max) {
      const whole = extent(aligned);
      if (whole) {
        min = Math.min(min == null ? whole[0] : min, whole[0]);
        max = Math.max(max == null ? whole[1] : max, whole[1]);
      }
      if (min == null || max == null) return [bounds[0] == null ? 0 : bounds[0], bounds[1] == null ? 1 : bounds[1]];
      if (mode === "log") return uPlot.rangeLog(min, max, 10, true);
      if (mode === "asinh") return uPlot.rangeAsinh(min, max, 10, true);
      const r = uPlot.rangeNum(min, max, 0.1, true);
      if (bounds[0] != null && min >= bounds[0]) r[0] = Math.max(r[0], bounds[0]);
      if (bounds[1] != null && max <= bounds[1]) r[1] = Math.min(r[1], bounds[1]);
      return r;
    };
  }

  function padded(u, min, max) {
    const pad = max > min ? (max - min) * 0.04 : 1;
    return [min - pad, max + pad];
  }

  // Confidence intervals as error bars with caps, clipped to the plot area.
  function drawBars(series, aligned) {
    return function (u) {
      const ctx = u.ctx;
      const cap = 4 * devicePixelRatio;
      ctx.save();
      ctx.beginPath();
      ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
      ctx.clip();
      aligned.bars.forEach(function (b, j) {
        if (!b || !u.series[j + 1].show) return;
        ctx.strokeStyle = series[j].colour;
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.beginPath();
        aligned.xs.forEach(function (x, i) {
          if (b.low[i] == null) return;
          const px = u.valToPos(x, "x", true);
          const top = u.valToPos(b.high[i], "y", true);
          const bottom = u.valToPos(b.low[i], "y", true);
          ctx.moveTo(px, top); ctx.lineTo(px, bottom);
          ctx.moveTo(px - cap, top); ctx.lineTo(px + cap, top);
          ctx.moveTo(px - cap, bottom); ctx.lineTo(px + cap, bottom);
        });
        ctx.stroke();
      });
      ctx.restore();
    };
  }

  function control(tag, attrs) {
    const el = document.createElement(tag);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    return el;
  }

  function toolbar(root, spec, state, redraw) {
    const bar = control("div", { class: "ichart-controls" });
    if (spec.smoothing) {
      const label = control("label", { class: "ichart-smoothing" });
      const slider = control("input", { type: "range", min: "0", max: "0.99", step: "0.01" });
      const shown = control("output", {});
      slider.value = String(state.smoothing);
      shown.textContent = Number(state.smoothing).toFixed(2);
      label.append("Smoothing ", slider, shown);
      slider.addEventListener("input", function () {
        state.smoothing = Number(slider.value);
        shown.textContent = state.smoothing.toFixed(2);
        redraw(false);
      });
      bar.append(label);
    }
    if (spec.log_option) {
      const label = control("label", { class: "ichart-log" });
      const box = control("input", { type: "checkbox" });
      box.checked = state.log;
      label.append(box, " Log scale");
      box.addEventListener("change", function () {
        state.log = box.checked;
        redraw(true);
      });
      bar.append(label);
    }
    bar.append(control("span", { class: "hint" }));
    bar.lastChild.textContent = "Drag to zoom, double-click to reset.";
    root.insertBefore(bar, root.firstChild);
  }

  function render(root) {
    if (root.dataset.chartReady || typeof uPlot === "undefined") return;
    // In an attribute, not a JSON <script>: htmx drops scripts from the markup it swaps in.
    const spec = JSON.parse(root.getAttribute("data-chart") || "{}");
    const series = normalise(spec);
    if (!series.some(function (s) { return s.points.length; })) return; // the SVG says "no data"
    const aligned = align(series);
    const bounds = spec.y_range || [null, null];
    const positive = aligned.ys.every(function (col) {
      return col.every(function (v) { return v == null || v > 0; });
    });
    const id = root.id || "";
    const state = kept.get(id) || { smoothing: 0, log: false, x: null };
    if (id) kept.set(id, state);
    const muted = getComputedStyle(document.body).color;
    let plot = null;

    function data() {
      const ys = aligned.ys.map(function (col) { return smooth(col, spec.smoothing ? state.smoothing : 0); });
      return [aligned.xs].concat(ys);
    }

    function build() {
      const mode = !state.log ? "linear" : positive ? "log" : "asinh";
      const distr = { linear: 1, log: 3, asinh: 4 }[mode];
      const opts = {
        title: spec.title,
        width: Math.max(240, root.clientWidth),
        height: HEIGHT,
        scales: {
          // Error bars at the first and last point would be cut in half at the plot's edge.
          x: { time: false, range: aligned.bars.some(Boolean) ? padded : undefined },
          y: { distr: distr, log: 10, range: yRange(bounds, aligned, mode) },
        },
        axes: [
          { label: spec.x_label, stroke: muted, grid: { stroke: "#e3e7ee" }, ticks: { stroke: "#e3e7ee" } },
          { label: spec.y_label, stroke: muted, grid: { stroke: "#e3e7ee" }, ticks: { stroke: "#e3e7ee" }, size: 60 },
        ],
        legend: { live: true },
        cursor: { drag: { x: true, y: false } },
        series: [{ label: spec.x_label, value: function (u, v) { return format(v); } }].concat(
          series.map(function (s, j) {
            const b = aligned.bars[j];
            return {
              label: s.name,
              stroke: s.colour,
              width: 2,
              spanGaps: true,
              points: { show: aligned.xs.length <= MAX_POINTS_SHOWN, size: 6, fill: s.colour },
              value: function (u, v, si, i) {
                if (v == null) return "—";
                if (b && i != null && b.low[i] != null) {
                  return format(v) + " [" + format(b.low[i]) + ", " + format(b.high[i]) + "]";
                }
                return format(v);
              },
            };
          })
        ),
        hooks: {
          draw: [drawBars(series, aligned)],
          setScale: [
            function (u, key) {
              const s = u.scales[key];
              if (key === "x") {
                root.dataset.xMin = format(s.min);
                root.dataset.xMax = format(s.max);
                const full = s.min <= aligned.xs[0] && s.max >= aligned.xs[aligned.xs.length - 1];
                state.x = full ? null : { min: s.min, max: s.max };
              } else if (key === "y") {
                root.dataset.yMin = String(s.min);
                root.dataset.yMax = String(s.max);
              }
            },
          ],
        },
      };
      const holder = root.querySelector(".ichart-plot");
      const zoom = state.x; // uPlot's first setScale (the full range) would overwrite it
      plot = new uPlot(opts, data(), holder);
      if (zoom) plot.setScale("x", zoom);
      root.dataset.log = state.log ? mode : "off";
    }

    function redraw(rebuild) {
      root.dataset.smoothing = String(state.smoothing);
      if (rebuild) {
        plot.destroy();
        build();
        return;
      }
      const x = { min: plot.scales.x.min, max: plot.scales.x.max };
      plot.setData(data(), false);
      plot.setScale("x", x); // the y range follows the smoothed data in view
      if (plot.cursor.idx != null) plot.setLegend({ idx: plot.cursor.idx });
    }

    root.append(control("div", { class: "ichart-plot" }));
    toolbar(root, spec, state, redraw);
    build();
    root.dataset.smoothing = String(state.smoothing);
    root.dataset.chartReady = "1";
    if (typeof ResizeObserver !== "undefined") {
      let width = root.clientWidth;
      new ResizeObserver(function () {
        if (root.clientWidth !== width && plot) {
          width = root.clientWidth;
          plot.setSize({ width: Math.max(240, width), height: HEIGHT });
        }
      }).observe(root);
    }
  }

  function renderAll(scope) {
    (scope || document).querySelectorAll("[data-chart]").forEach(render);
  }

  document.addEventListener("DOMContentLoaded", function () { renderAll(document); });
  // htmx swaps in fresh markup (a running job's page every second): draw what it brings.
  document.addEventListener("htmx:load", function (event) {
    const target = event.target;
    if (target.matches && target.matches("[data-chart]")) render(target);
    else if (target.querySelectorAll) renderAll(target);
  });
})();
