/* hepatoplan slice viewer: the CT with the plan's label map over it, axial, coronal and sagittal.
 * A 2D-canvas viewer of hepatoplan's own (no library, no network). Reads the JSON in
 * <script id="hp-slice-data"> (pipeline/slice_viewer.py), inflates its arrays with the browser's
 * DecompressionStream and draws each view in radiological convention, to scale: column = the
 * in-plane axis reversed (axial/coronal: patient's right on the left; sagittal: anterior on the
 * left), row = the other axis reversed (anterior or superior up).
 * Sets data-status on #hp-slices: "ready", "unsupported" or "error"; every canvas gets data-rect
 * (page rectangle, CSS px) and data-map ("x0,ax,y0,ay": page x = x0 + ax * u, page y = y0 + ay * v
 * for the full-grid voxel indices (u, v) of the view's plane). */
(function () {
  "use strict";
  var root = document.getElementById("hp-slices");
  if (!root) { return; }
  var message = root.querySelector(".sv-message");
  function fail(status, text) {
    root.setAttribute("data-status", status);
    message.textContent = text; message.style.display = "block";
  }
  var data;
  try { data = JSON.parse(document.getElementById("hp-slice-data").textContent); }
  catch (e) { fail("error", "slice data unreadable: " + e); return; }
  if (typeof DecompressionStream === "undefined") {
    fail("unsupported", "This browser cannot show the slices (it lacks DecompressionStream): open the " +
      "report in a current Chrome, Edge, Firefox or Safari. The QC montage shows the outlines on the CT.");
    return;
  }
  function inflate(b64) {
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
  }
  var TYPES = {uint8: Uint8Array, uint16: Uint16Array};
  Promise.all([inflate(data.ct.b64), inflate(data.labels.b64), data.vessels ? inflate(data.vessels.b64) : null])
    .then(function (b) {
      start(new Uint8Array(b[0]), new TYPES[data.labels.dtype](b[1]), b[2] ? new Uint8Array(b[2]) : null);
    })
    .catch(function (e) { fail("error", "slice viewer failed: " + e); });

  function start(ct, lab, ves) {
    var n = data.shape, sp = data.spacing_mm, stride = [n[1] * n[2], n[2], 1];  // C order, axis 2 fastest
    if (data.ct.delta_axis === 0) {  // undo the differences along axis 0 (Uint8Array wraps mod 256)
      for (var p = stride[0]; p < ct.length; p++) { ct[p] += ct[p - stride[0]]; }
    }
    var pos = data.start.slice();
    var VIEWS = {  // u: screen columns, v: screen rows, w: the slice axis; letters: left, right, top, bottom
      axial: {u: 0, v: 1, w: 2, letters: ["R", "L", "A", "P"]},
      coronal: {u: 0, v: 2, w: 1, letters: ["R", "L", "S", "I"]},
      sagittal: {u: 1, v: 2, w: 0, letters: ["A", "P", "S", "I"]}
    };
    var AXIS = ["R", "A", "S"], tumourOffset = data.tumour_label_offset, A = data.affine_ras;
    function world(p) {  // RAS world mm of a stored index
      return [0, 1, 2].map(function (r) { return A[r][0] * p[0] + A[r][1] * p[1] + A[r][2] * p[2] + A[r][3]; });
    }
    var state = {window: data.initial_window, opacity: data.opacity_percent / 100, hidden: {}, crosshair: true};
    var greyLut = new Uint8Array(256), maxLabel = 0;
    data.classes.forEach(function (c) { maxLabel = Math.max(maxLabel, c.value); });
    var labelLut = new Uint8Array(4 * (maxLabel + 1)), vesselLut = new Uint8Array(4 * 4);
    var className = {};
    data.classes.forEach(function (c) { className[c.value] = c.name; });

    function buildLuts() {
      var win = data.windows[state.window], lo = data.ct_range[0], hi = data.ct_range[1];
      var bottom = win[0] - win[1] / 2;
      for (var g = 0; g < 256; g++) {
        var value = lo + g * (hi - lo) / 255;
        greyLut[g] = Math.max(0, Math.min(255, Math.round((value - bottom) / win[1] * 255)));
      }
      labelLut.fill(0);
      data.classes.forEach(function (c) {
        var rgb = c.rgb, shown = !state.hidden[c.group];
        if (c.group === "resected") {
          if (!state.hidden.resected) { rgb = data.resected_rgb; } else { shown = !state.hidden.segments; }
        }
        if (shown) { labelLut.set([rgb[0], rgb[1], rgb[2], 1], 4 * c.value); }
      });
      vesselLut.fill(0);
      data.vessel_layers.slice().reverse().forEach(function (layer) {  // the first layer wins
        if (state.hidden[layer.name]) { return; }
        for (var bits = 1; bits < 4; bits++) {
          if (bits & layer.bit) { vesselLut.set([layer.rgb[0], layer.rgb[1], layer.rgb[2], 1], 4 * bits); }
        }
      });
    }

    // ---- views ---------------------------------------------------------------------------
    var views = {};
    Array.prototype.forEach.call(root.querySelectorAll(".sv-view"), function (fig) {
      var name = fig.getAttribute("data-view"), V = VIEWS[name];
      V.name = name; V.fig = fig; V.canvas = fig.querySelector("canvas"); V.W = n[V.u]; V.H = n[V.v];
      V.buffer = document.createElement("canvas"); V.buffer.width = V.W; V.buffer.height = V.H;
      V.image = V.buffer.getContext("2d").createImageData(V.W, V.H);
      V.slider = fig.querySelector(".sv-slider"); V.slider.max = String(n[V.w] - 1);
      V.pos = fig.querySelector(".sv-pos");
      views[name] = V;
    });

    function layout() {
      var gap = 12, widths = 0, heights = 0;
      Object.keys(views).forEach(function (k) {
        var V = views[k]; widths += V.W * sp[V.u]; heights = Math.max(heights, V.H * sp[V.v]);
      });
      var avail = Math.max(300, root.clientWidth - 2 * gap - 4);
      var scale = Math.min(avail / widths, 440 / heights);  // CSS px per mm
      var dpr = window.devicePixelRatio || 1;
      Object.keys(views).forEach(function (k) {
        var V = views[k], cssW = Math.floor(V.W * sp[V.u] * scale), cssH = Math.floor(V.H * sp[V.v] * scale);
        V.cssW = cssW; V.cssH = cssH;
        V.canvas.style.width = cssW + "px"; V.canvas.style.height = cssH + "px";
        V.canvas.width = Math.round(cssW * dpr); V.canvas.height = Math.round(cssH * dpr);
      });
    }

    function publish(V) {
      var r = V.canvas.getBoundingClientRect(), left = r.left + window.scrollX, top = r.top + window.scrollY;
      var pw = r.width / V.W, ph = r.height / V.H, o = data.offset, s = data.step;
      V.canvas.setAttribute("data-rect", [left, top, r.width, r.height].map(function (x) { return x.toFixed(2); }).join(","));
      V.canvas.setAttribute("data-map", [left + (V.W - 0.5 + o[V.u] / s[V.u]) * pw, -pw / s[V.u],
        top + (V.H - 0.5 + o[V.v] / s[V.v]) * ph, -ph / s[V.v]].map(function (x) { return x.toFixed(4); }).join(","));
    }

    function draw(V) {
      var out = V.image.data, W = V.W, H = V.H, su = stride[V.u], sv = stride[V.v];
      var base = pos[V.w] * stride[V.w], a = state.opacity, b = 1 - a, p = 0;
      for (var row = 0; row < H; row++) {
        var line = base + (H - 1 - row) * sv + (W - 1) * su;
        for (var col = 0; col < W; col++, p += 4) {
          var idx = line - col * su, g = greyLut[ct[idx]], L = lab[idx], q = 4 * L, lut = labelLut;
          if (!(L > tumourOffset && lut[q + 3]) && ves && vesselLut[4 * ves[idx] + 3]) { lut = vesselLut; q = 4 * ves[idx]; }
          if (lut[q + 3]) {
            out[p] = b * g + a * lut[q]; out[p + 1] = b * g + a * lut[q + 1]; out[p + 2] = b * g + a * lut[q + 2];
          } else { out[p] = g; out[p + 1] = g; out[p + 2] = g; }
          out[p + 3] = 255;
        }
      }
      V.buffer.getContext("2d").putImageData(V.image, 0, 0);
      var ctx = V.canvas.getContext("2d"), cw = V.canvas.width, ch = V.canvas.height;
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(V.buffer, 0, 0, cw, ch);
      if (state.crosshair) {  // lines through the point, with a gap around it
        var x = (W - 0.5 - pos[V.u]) * cw / W, y = (H - 0.5 - pos[V.v]) * ch / H, gap = 10 * (window.devicePixelRatio || 1);
        ctx.strokeStyle = "rgba(0, 230, 230, 0.55)"; ctx.lineWidth = 1;
        ctx.beginPath();
        ctx.moveTo(Math.round(x) + 0.5, 0); ctx.lineTo(Math.round(x) + 0.5, y - gap);
        ctx.moveTo(Math.round(x) + 0.5, y + gap); ctx.lineTo(Math.round(x) + 0.5, ch);
        ctx.moveTo(0, Math.round(y) + 0.5); ctx.lineTo(x - gap, Math.round(y) + 0.5);
        ctx.moveTo(x + gap, Math.round(y) + 0.5); ctx.lineTo(cw, Math.round(y) + 0.5);
        ctx.stroke();
      }
      var size = Math.round(13 * (window.devicePixelRatio || 1));
      ctx.font = "bold " + size + "px sans-serif"; ctx.fillStyle = "#fff"; ctx.textBaseline = "middle";
      ctx.shadowColor = "#000"; ctx.shadowBlur = 3;
      ctx.textAlign = "left"; ctx.fillText(V.letters[0], 4, ch / 2);
      ctx.textAlign = "right"; ctx.fillText(V.letters[1], cw - 4, ch / 2);
      ctx.textAlign = "center"; ctx.fillText(V.letters[2], cw / 2, size * 0.7);
      ctx.fillText(V.letters[3], cw / 2, ch - size * 0.7);
      ctx.shadowBlur = 0;
      V.slider.value = String(pos[V.w]);
      V.pos.textContent = (pos[V.w] + 1) + "/" + n[V.w] + " · " + AXIS[V.w] + " " + world(pos)[V.w].toFixed(1) + " mm";
    }

    var readout = document.createElement("p");
    readout.className = "sv-readout";
    root.querySelector(".sv-controls").appendChild(readout);
    function drawAll() {
      Object.keys(views).forEach(function (k) { draw(views[k]); });
      var idx = stride[0] * pos[0] + stride[1] * pos[1] + pos[2], L = lab[idx], lo = data.ct_range[0], hi = data.ct_range[1];
      var names = L ? [className[L]] : [];
      if (ves) { data.vessel_layers.forEach(function (layer) { if (ves[idx] & layer.bit) { names.push(layer.name); } }); }
      var full = pos.map(function (p, a) { return data.offset[a] + p * data.step[a]; });
      var value = lo + ct[idx] * (hi - lo) / 255;
      readout.textContent = "RAS (" + world(pos).map(function (v) { return v.toFixed(1); }).join(", ") + ") mm: " +
        (data.ct_unit === "HU" ? "CT ≈ " + value.toFixed(0) + " HU" :
        "intensity ≈ " + value.toPrecision(3)) + (names.length ? ", " + names.join(", ") : ", no label");
      root.setAttribute("data-position", full.join(","));
    }

    // ---- interaction ---------------------------------------------------------------------
    Object.keys(views).forEach(function (k) {
      var V = views[k];
      V.canvas.addEventListener("wheel", function (e) {
        e.preventDefault();
        pos[V.w] = Math.max(0, Math.min(n[V.w] - 1, pos[V.w] + (e.deltaY > 0 ? -1 : 1)));
        drawAll();
      }, {passive: false});
      V.canvas.addEventListener("click", function (e) {
        var r = V.canvas.getBoundingClientRect();
        var col = Math.floor((e.clientX - r.left) / r.width * V.W), row = Math.floor((e.clientY - r.top) / r.height * V.H);
        pos[V.u] = Math.max(0, Math.min(V.W - 1, V.W - 1 - col));
        pos[V.v] = Math.max(0, Math.min(V.H - 1, V.H - 1 - row));
        drawAll();
      });
      V.slider.addEventListener("input", function () { pos[V.w] = Number(V.slider.value); drawAll(); });
    });
    Array.prototype.forEach.call(root.querySelectorAll("button[data-window]"), function (button) {
      button.addEventListener("click", function () { setWindow(button.getAttribute("data-window")); });
    });
    function setWindow(name) {
      if (!data.windows[name]) { return; }
      state.window = name;
      Array.prototype.forEach.call(root.querySelectorAll("button[data-window]"), function (button) {
        button.classList.toggle("active", button.getAttribute("data-window") === name);
      });
      buildLuts(); drawAll();
    }
    var opacity = root.querySelector(".sv-opacity input");
    opacity.value = String(Math.round(state.opacity * 100));
    opacity.addEventListener("input", function () { state.opacity = Number(opacity.value) / 100; drawAll(); });
    var toggles = root.querySelectorAll("input[data-group]");
    Array.prototype.forEach.call(toggles, function (box) {
      box.addEventListener("change", function () { state.hidden[box.getAttribute("data-group")] = !box.checked; buildLuts(); drawAll(); });
    });
    function goTo(index) { pos = index.slice(); drawAll(); }
    var table = root.querySelector("table.sv-tumours");
    if (data.tumours.length) {
      var head = "<thead><tr><th></th><th>tumour</th><th>volume (mL)</th><th>status</th><th>min margin (mm)</th></tr></thead>";
      table.innerHTML = head + "<tbody></tbody>";
      data.tumours.forEach(function (t) {
        var tr = document.createElement("tr");
        tr.className = "sv-tumour"; tr.tabIndex = 0; tr.setAttribute("data-tumour", String(t.id));
        tr.title = "show tumour " + t.id + " on the slices";
        function cell(text, cls) { var td = document.createElement("td"); td.textContent = text; if (cls) { td.className = cls; } tr.appendChild(td); return td; }
        var sw = document.createElement("span"); sw.className = "hp-swatch"; sw.style.background = "rgb(" + t.rgb.join(",") + ")";
        cell("").appendChild(sw);
        cell("tumour " + t.id);
        cell(t.volume_ml == null ? "—" : Number(t.volume_ml).toFixed(2), "num");
        cell(t.status == null ? "—" : t.status);
        cell(t.min_margin_mm == null ? "—" : Number(t.min_margin_mm).toFixed(1), "num");
        tr.addEventListener("click", function () { goTo(t.at); });
        tr.addEventListener("keydown", function (e) { if (e.key === "Enter") { goTo(t.at); } });
        table.tBodies[0].appendChild(tr);
      });
    } else { table.style.display = "none"; }

    // ---- a link can open a given state: #sv-goto=tumour-2&sv-window=soft tissue&sv-opacity=100&sv-hide=segments&sv-crosshair=off
    var params = {};
    (window.location.hash || "").replace(/^#/, "").split("&").forEach(function (kv) {
      var i = kv.indexOf("="); if (i > 0) { params[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1)); }
    });
    if (params["sv-hide"]) {
      params["sv-hide"].split(",").forEach(function (g) { state.hidden[g] = true; });
      Array.prototype.forEach.call(toggles, function (box) { box.checked = !state.hidden[box.getAttribute("data-group")]; });
    }
    if (params["sv-opacity"]) { state.opacity = Math.max(0, Math.min(100, Number(params["sv-opacity"]))) / 100; opacity.value = String(Math.round(state.opacity * 100)); }
    if (params["sv-crosshair"] === "off") { state.crosshair = false; }
    var goto = params["sv-goto"] || "";
    var tumour = data.tumours.filter(function (t) { return "tumour-" + t.id === goto; })[0];
    if (tumour) { pos = tumour.at.slice(); }
    else if (/^\d+,\d+,\d+$/.test(goto)) {
      pos = goto.split(",").map(function (v, a) {
        return Math.max(0, Math.min(n[a] - 1, Math.round((Number(v) - data.offset[a]) / data.step[a])));
      });
    }
    layout();
    setWindow(data.windows[params["sv-window"]] ? params["sv-window"] : state.window);
    Object.keys(views).forEach(function (k) { publish(views[k]); });
    window.addEventListener("resize", function () { layout(); drawAll(); Object.keys(views).forEach(function (k) { publish(views[k]); }); });
    root.setAttribute("data-status", "ready");
  }
})();
