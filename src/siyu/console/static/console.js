/* siyu console: confirmations, error toasts and charts. No inline scripts: the CSP allows only /static. */
(function () {
  "use strict";

  // Ask before a destructive form post (unmerge, approve a merge); capture runs before htmx sees it.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  function toast(text, kind) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var item = document.createElement("div");
    item.className = "toast toast-" + (kind || "info");
    item.setAttribute("role", "alert");
    item.textContent = text;
    box.appendChild(item);
    window.setTimeout(function () { item.classList.add("toast-out"); }, 6000);
    window.setTimeout(function () { item.remove(); }, 6600);
  }

  // htmx leaves 4xx/5xx responses unswapped (htmx-config in base.html): say what went wrong instead.
  document.addEventListener("htmx:response:error", function (event) {
    var ctx = event.detail && event.detail.ctx;
    var status = ctx && ctx.response ? ctx.response.status : 0;
    var message = "The request failed (HTTP " + status + ").";
    if (ctx && ctx.text) {
      var found = new DOMParser().parseFromString(ctx.text, "text/html").querySelector(".error-message");
      if (found && found.textContent.trim()) message = found.textContent.trim();
    }
    toast(message, "error");
  });
  document.addEventListener("htmx:error", function (event) {
    var ctx = event.detail && event.detail.ctx;
    if (ctx && !ctx.response) toast("The server did not answer: check your connection and try again.", "error");
  });

  var palette = {
    bar: "#0f8a6c",
    barHover: "#0b6b54",
    axis: "#6b7280",
    grid: "#eef0f3",
    text: "#1f2937"
  };

  function eventsPerMinute(el, data) {
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    var every = Math.max(1, Math.round(data.labels.length / 6));
    chart.setOption({
      animation: !window.matchMedia("(prefers-reduced-motion: reduce)").matches,
      animationDuration: 300,
      textStyle: { fontFamily: getComputedStyle(document.body).fontFamily },
      grid: { left: 8, right: 16, top: 16, bottom: 8, containLabel: true },
      tooltip: {
        trigger: "axis",
        axisPointer: { type: "shadow" },
        valueFormatter: function (v) { return v + " events"; }
      },
      xAxis: {
        type: "category",
        data: data.labels,
        axisTick: { alignWithLabel: true },
        axisLine: { lineStyle: { color: palette.grid } },
        axisLabel: { color: palette.axis, interval: every - 1 }
      },
      yAxis: {
        type: "value",
        minInterval: 1,
        splitLine: { lineStyle: { color: palette.grid } },
        axisLabel: { color: palette.axis }
      },
      series: [{
        name: "Events",
        type: "bar",
        data: data.counts,
        barMaxWidth: 18,
        itemStyle: { color: palette.bar, borderRadius: [3, 3, 0, 0] },
        emphasis: { itemStyle: { color: palette.barHover } }
      }]
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }

  function base() {
    return {
      animation: !window.matchMedia("(prefers-reduced-motion: reduce)").matches,
      animationDuration: 300,
      textStyle: { fontFamily: getComputedStyle(document.body).fontFamily },
      grid: { left: 8, right: 16, top: 32, bottom: 8, containLabel: true },
      tooltip: { trigger: "axis" }
    };
  }

  var stageColors = ["#9ca3af", "#60a5fa", "#34d399", "#0f8a6c", "#065f46", "#f59e0b", "#dc2626"];

  function draw(el, option) {
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    chart.setOption(option);
    window.addEventListener("resize", function () { chart.resize(); });
  }

  function stageCounts(el, data) {
    var option = base();
    option.xAxis = { type: "category", data: data.stages, axisLabel: { color: palette.axis } };
    option.yAxis = { type: "value", minInterval: 1, splitLine: { lineStyle: { color: palette.grid } } };
    option.series = [{
      name: "Customers", type: "bar", barMaxWidth: 48,
      data: data.counts.map(function (v, i) { return { value: v, itemStyle: { color: stageColors[i] } }; }),
      label: { show: true, position: "top", color: palette.text }
    }];
    draw(el, option);
  }

  function stageWeekly(el, data) {
    var option = base();
    option.legend = { top: 0 };
    option.xAxis = { type: "category", data: data.weeks, axisLabel: { color: palette.axis } };
    option.yAxis = { type: "value", minInterval: 1, splitLine: { lineStyle: { color: palette.grid } } };
    option.series = data.stages.map(function (stage, i) {
      return { name: stage, type: "bar", stack: "moves", data: data.entered[stage], itemStyle: { color: stageColors[i] } };
    });
    draw(el, option);
  }

  function stageTrend(el, data) {
    var option = base();
    option.legend = { top: 0 };
    option.xAxis = { type: "category", data: data.trend.map(function (d) { return d.day; }), axisLabel: { color: palette.axis } };
    option.yAxis = { type: "value", minInterval: 1, splitLine: { lineStyle: { color: palette.grid } } };
    option.series = data.stages.map(function (stage, i) {
      return {
        name: stage, type: "line", stack: "customers", areaStyle: {}, symbol: "none",
        data: data.trend.map(function (d) { return d[stage]; }), itemStyle: { color: stageColors[i] }
      };
    });
    draw(el, option);
  }

  function stageFlows(el, data) {
    if (!data.flows.length) { el.textContent = "No customer changed stage in the last 30 days."; el.classList.add("empty"); return; }
    var names = {};
    data.flows.forEach(function (f) { names[f.source] = 1; names[f.target] = 1; });
    var colorOf = function (name) { return stageColors[data.stages.indexOf(name.replace(/^· | ·$/g, ""))]; };
    var option = base();
    option.tooltip = { trigger: "item" };
    option.series = [{
      type: "sankey", left: 8, right: 120, top: 8, bottom: 8, nodeAlign: "justify",
      data: Object.keys(names).map(function (n) { return { name: n, itemStyle: { color: colorOf(n) } }; }),
      links: data.flows,
      lineStyle: { color: "gradient", opacity: 0.35 },
      label: { color: palette.text }
    }];
    draw(el, option);
  }

  function segmentSize(el, data) {
    var option = base();
    option.legend = { top: 0 };
    option.xAxis = {
      type: "category", data: data.labels,
      axisLabel: { color: palette.axis, formatter: function (v) { return new Date(v).toLocaleString(); } }
    };
    option.yAxis = [
      { type: "value", minInterval: 1, splitLine: { lineStyle: { color: palette.grid } } },
      { type: "value", minInterval: 1, splitLine: { show: false } }
    ];
    option.series = [
      { name: "Size", type: "line", step: "end", data: data.sizes, itemStyle: { color: palette.bar } },
      { name: "Entered", type: "bar", yAxisIndex: 1, stack: "moves", barMaxWidth: 24, data: data.entered, itemStyle: { color: "#60a5fa" } },
      { name: "Left", type: "bar", yAxisIndex: 1, stack: "moves", barMaxWidth: 24, data: data.exited, itemStyle: { color: "#f59e0b" } }
    ];
    draw(el, option);
  }

  function journeyGraph(el, data) {
    var colors = { send: "#0f8a6c", wait: "#6b7280", wait_until: "#6b7280", wait_event: "#2563eb", split: "#b45309", ab: "#b45309", exit: "#374151" };
    var maxX = Math.max.apply(null, data.nodes.map(function (n) { return n.x; }).concat([0]));
    var maxY = Math.max.apply(null, data.nodes.map(function (n) { return n.y; }).concat([0]));
    el.style.height = Math.max(260, maxY + 200) + "px";
    // On hidden value axes, so one row of nodes is not stretched to the chart's height (layout "none" is).
    draw(el, {
      animation: false,
      grid: { left: 0, right: 0, top: 0, bottom: 0 },
      xAxis: { type: "value", show: false, min: -100, max: maxX + 100 },
      yAxis: { type: "value", show: false, inverse: true, min: -60, max: maxY + 60 },
      tooltip: { formatter: function (p) { return p.dataType === "node" ? p.data.label.replace(/\n/g, "<br>") : (p.data.label || ""); } },
      series: [{
        type: "graph", coordinateSystem: "cartesian2d",
        symbol: "roundRect", symbolSize: [160, 74], edgeSymbol: ["none", "arrow"], edgeSymbolSize: 8,
        label: { show: true, color: "#fff", fontSize: 11, lineHeight: 15, formatter: function (p) { return p.data.label; } },
        edgeLabel: { show: true, fontSize: 11, color: palette.text, formatter: function (p) { return p.data.label || ""; } },
        lineStyle: { color: palette.axis, width: 1.5, curveness: 0.08 },
        data: data.nodes.map(function (n) {
          return { name: n.name, value: [n.x, n.y], label: n.label, itemStyle: { color: colors[n.type] || "#1f6f8b" } };
        }),
        links: data.links
      }]
    });
  }

  var charts = {
    "journey-graph": journeyGraph,
    "events-per-minute": eventsPerMinute,
    "stage-counts": stageCounts,
    "stage-weekly": stageWeekly,
    "stage-trend": stageTrend,
    "stage-flows": stageFlows,
    "segment-size": segmentSize
  };

  function initCharts(root) {
    if (!window.echarts) return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var draw = charts[el.dataset.chart];
      var source = document.getElementById(el.dataset.chartData);
      if (!draw || !source || el.dataset.ready) return;
      el.dataset.ready = "1";
      draw(el, JSON.parse(source.textContent));
    });
  }

  document.addEventListener("DOMContentLoaded", function () { initCharts(document); });
})();
