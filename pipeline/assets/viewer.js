/* hepatoplan 3D plan viewer: a small self-contained WebGL viewer (no network, no library).
 * Reads the JSON in <script id="hp-mesh-data">, draws the meshes (RAS mm), lets the user rotate
 * (drag), zoom (wheel), pan (shift/right drag), toggle structures and pick preset views.
 * Sets data-status on #hp-viewer: "rendered" (with data-triangles and data-rect, the canvas'
 * page rectangle in CSS pixels), "no-webgl" or "error". */
(function () {
  "use strict";
  var root = document.getElementById("hp-viewer");
  if (!root) { return; }
  function fail(status, message) {
    root.setAttribute("data-status", status);
    var msg = root.querySelector(".hp-viewer-message");
    if (msg) { msg.textContent = message; msg.style.display = "block"; }
  }
  try {
    var data = JSON.parse(document.getElementById("hp-mesh-data").textContent);
  } catch (e) { fail("error", "3D data unreadable: " + e); return; }
  var canvas = root.querySelector("canvas.hp-gl");
  var overlay = root.querySelector("canvas.hp-axes");
  var gl = canvas.getContext("webgl2", {preserveDrawingBuffer: false, antialias: true, alpha: false});
  var isWebGL2 = !!gl;
  if (!gl) {
    gl = canvas.getContext("webgl", {preserveDrawingBuffer: false, antialias: true, alpha: false});
    if (gl && !gl.getExtension("OES_element_index_uint")) { gl = null; }
  }
  if (!gl) { fail("no-webgl", "This browser cannot show the 3D view (WebGL unavailable). The PNG previews below show the plan."); return; }

  function b64(str) {
    var bin = atob(str), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out.buffer;
  }
  // ---- geometry ---------------------------------------------------------------------------
  var lo = data.bbox_lo_mm, hi = data.bbox_hi_mm;
  var centre = [(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2];
  var radius = 0.5 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) || 1;
  var structures = data.structures.map(function (s) {
    var q = new Uint16Array(b64(s.positions_b64));
    var n = q.length / 3, pos = new Float32Array(q.length), c = [0, 0, 0];
    for (var i = 0; i < n; i++) {
      for (var a = 0; a < 3; a++) {
        var v = s.lo_mm[a] + (q[3 * i + a] / 65535) * (s.hi_mm[a] - s.lo_mm[a]) - centre[a];
        pos[3 * i + a] = v; c[a] += v / n;
      }
    }
    var idx = s.index_type === "u16" ? new Uint16Array(b64(s.indices_b64)) : new Uint32Array(b64(s.indices_b64));
    var nor = new Float32Array(pos.length);
    for (var t = 0; t < idx.length; t += 3) {
      var i0 = 3 * idx[t], i1 = 3 * idx[t + 1], i2 = 3 * idx[t + 2];
      var ux = pos[i1] - pos[i0], uy = pos[i1 + 1] - pos[i0 + 1], uz = pos[i1 + 2] - pos[i0 + 2];
      var vx = pos[i2] - pos[i0], vy = pos[i2 + 1] - pos[i0 + 1], vz = pos[i2 + 2] - pos[i0 + 2];
      var nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
      [i0, i1, i2].forEach(function (k) { nor[k] += nx; nor[k + 1] += ny; nor[k + 2] += nz; });
    }
    function buffer(target, array) {
      var b = gl.createBuffer(); gl.bindBuffer(target, b); gl.bufferData(target, array, gl.STATIC_DRAW); return b;
    }
    return {
      name: s.name, colour: s.colour, opacity: s.opacity, baseOpacity: s.opacity,
      parenchyma: !!s.parenchyma, visible: s.visible, centroid: c,
      count: idx.length, indexType: s.index_type === "u16" ? gl.UNSIGNED_SHORT : gl.UNSIGNED_INT,
      pos: buffer(gl.ARRAY_BUFFER, pos), nor: buffer(gl.ARRAY_BUFFER, nor),
      idx: buffer(gl.ELEMENT_ARRAY_BUFFER, idx)
    };
  });
  // ---- shaders ----------------------------------------------------------------------------
  var vsrc = "attribute vec3 aPos; attribute vec3 aNor; uniform mat4 uMV; uniform mat4 uP;" +
    "varying vec3 vN;" +
    "void main(){ vec4 p = uMV * vec4(aPos, 1.0); vN = mat3(uMV) * aNor; gl_Position = uP * p; }";
  var fsrc = "precision mediump float; uniform vec4 uColour; varying vec3 vN;" +
    "void main(){ vec3 n = normalize(vN); if (!gl_FrontFacing) { n = -n; }" +
    " vec3 l = normalize(vec3(0.3, 0.4, 1.0)); vec3 v = vec3(0.0, 0.0, 1.0);" +
    " float d = max(dot(n, l), 0.0); float s = pow(max(dot(n, normalize(l + v)), 0.0), 24.0);" +
    " gl_FragColor = vec4(uColour.rgb * (0.28 + 0.72 * d) + vec3(0.22 * s), uColour.a); }";
  function shader(type, src) {
    var sh = gl.createShader(type); gl.shaderSource(sh, src); gl.compileShader(sh);
    if (!gl.getShaderParameter(sh, gl.COMPILE_STATUS)) { throw new Error(gl.getShaderInfoLog(sh)); }
    return sh;
  }
  var prog = gl.createProgram();
  gl.attachShader(prog, shader(gl.VERTEX_SHADER, vsrc));
  gl.attachShader(prog, shader(gl.FRAGMENT_SHADER, fsrc));
  gl.linkProgram(prog);
  if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) { fail("error", gl.getProgramInfoLog(prog)); return; }
  var loc = {
    pos: gl.getAttribLocation(prog, "aPos"), nor: gl.getAttribLocation(prog, "aNor"),
    mv: gl.getUniformLocation(prog, "uMV"), p: gl.getUniformLocation(prog, "uP"),
    colour: gl.getUniformLocation(prog, "uColour")
  };
  // ---- camera: rotation rows = screen right, up, towards the viewer, in RAS ---------------
  var rot, zoom = 1, pan = [0, 0];
  function cross(a, b) { return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]; }
  function setView(name) {
    var v = data.views[name]; var z = v[0], y = v[1]; rot = [cross(y, z), y, z];
    zoom = 1; pan = [0, 0]; root.setAttribute("data-view", name); draw();
  }
  function rotate(axis, angle) { // rotate the model about a screen axis (0 = x, 1 = y)
    var c = Math.cos(angle), s = Math.sin(angle), a = axis === 0 ? [1, 2] : [2, 0];
    var r1 = rot[a[0]], r2 = rot[a[1]];
    rot[a[0]] = [c * r1[0] - s * r2[0], c * r1[1] - s * r2[1], c * r1[2] - s * r2[2]];
    rot[a[1]] = [s * r1[0] + c * r2[0], s * r1[1] + c * r2[1], s * r1[2] + c * r2[2]];
  }
  function matrices() {
    var w = canvas.width, h = canvas.height, aspect = w / h;
    var half = radius * 0.9 / zoom, hw = aspect >= 1 ? half * aspect : half, hh = aspect >= 1 ? half : half / aspect;
    var P = [1 / hw, 0, 0, 0, 0, 1 / hh, 0, 0, 0, 0, -1 / (2 * radius), 0, 0, 0, 0, 1]; // ortho, column-major
    var r = rot, d = 0.0;
    var MV = [r[0][0], r[1][0], r[2][0], 0, r[0][1], r[1][1], r[2][1], 0, r[0][2], r[1][2], r[2][2], 0,
      pan[0], pan[1], d, 1];
    return {P: P, MV: MV};
  }
  // ---- drawing ----------------------------------------------------------------------------
  var pending = false, firstDone = false;
  function draw() { if (!pending) { pending = true; requestAnimationFrame(render); } }
  function drawMesh(s, alpha) {
    gl.uniform4f(loc.colour, s.colour[0], s.colour[1], s.colour[2], alpha);
    gl.bindBuffer(gl.ARRAY_BUFFER, s.pos); gl.vertexAttribPointer(loc.pos, 3, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ARRAY_BUFFER, s.nor); gl.vertexAttribPointer(loc.nor, 3, gl.FLOAT, false, 0, 0);
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, s.idx); gl.drawElements(gl.TRIANGLES, s.count, s.indexType, 0);
  }
  function render() {
    pending = false;
    var dpr = window.devicePixelRatio || 1, cw = Math.round(canvas.clientWidth * dpr), ch = Math.round(canvas.clientHeight * dpr);
    if (cw > 0 && ch > 0 && (canvas.width !== cw || canvas.height !== ch)) { canvas.width = cw; canvas.height = ch; }
    gl.viewport(0, 0, canvas.width, canvas.height);
    var bg = data.background;
    gl.clearColor(bg[0], bg[1], bg[2], 1); gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.useProgram(prog);
    var m = matrices();
    gl.uniformMatrix4fv(loc.p, false, new Float32Array(m.P));
    gl.uniformMatrix4fv(loc.mv, false, new Float32Array(m.MV));
    gl.enableVertexAttribArray(loc.pos); gl.enableVertexAttribArray(loc.nor);
    gl.enable(gl.DEPTH_TEST); gl.depthFunc(gl.LEQUAL);
    gl.disable(gl.BLEND); gl.depthMask(true); gl.disable(gl.CULL_FACE);
    var shown = structures.filter(function (s) { return s.visible; });
    shown.filter(function (s) { return s.opacity >= 0.999; }).forEach(function (s) { drawMesh(s, 1); });
    var depth = function (s) { var c = s.centroid; return rot[2][0] * c[0] + rot[2][1] * c[1] + rot[2][2] * c[2]; };
    var clear = shown.filter(function (s) { return s.opacity < 0.999; }).sort(function (a, b) { return depth(a) - depth(b); });
    gl.enable(gl.BLEND); gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA); gl.depthMask(false);
    gl.enable(gl.CULL_FACE);
    clear.forEach(function (s) {
      gl.cullFace(gl.FRONT); drawMesh(s, s.opacity); gl.cullFace(gl.BACK); drawMesh(s, s.opacity);
    });
    gl.depthMask(true); gl.disable(gl.CULL_FACE);
    drawAxes();
    if (!firstDone) {
      firstDone = true;
      root.setAttribute("data-triangles", String(structures.reduce(function (n, s) { return n + s.count / 3; }, 0)));
      var r = canvas.getBoundingClientRect();
      root.setAttribute("data-rect", [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height].map(Math.round).join(","));
      root.setAttribute("data-status", "rendered");
    }
  }
  function drawAxes() {
    var ctx = overlay.getContext("2d"), s = overlay.width, c = s / 2, L = s * 0.34;
    ctx.clearRect(0, 0, s, s);
    ctx.font = "bold " + Math.round(s * 0.16) + "px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    var axes = [["R", [1, 0, 0], "#c0392b"], ["A", [0, 1, 0], "#27ae60"], ["S", [0, 0, 1], "#2c6fbb"]];
    axes.sort(function (a, b) { return (rot[2][0] * a[1][0] + rot[2][1] * a[1][1] + rot[2][2] * a[1][2]) - (rot[2][0] * b[1][0] + rot[2][1] * b[1][1] + rot[2][2] * b[1][2]); });
    axes.forEach(function (a) {
      var v = a[1], x = rot[0][0] * v[0] + rot[0][1] * v[1] + rot[0][2] * v[2], y = rot[1][0] * v[0] + rot[1][1] * v[1] + rot[1][2] * v[2];
      ctx.strokeStyle = a[2]; ctx.fillStyle = a[2]; ctx.lineWidth = Math.max(2, s * 0.03);
      ctx.beginPath(); ctx.moveTo(c, c); ctx.lineTo(c + L * x, c - L * y); ctx.stroke();
      ctx.fillText(a[0], c + (L + s * 0.1) * x, c - (L + s * 0.1) * y);
    });
  }
  // ---- interaction ------------------------------------------------------------------------
  var drag = null;
  canvas.addEventListener("contextmenu", function (e) { e.preventDefault(); });
  canvas.addEventListener("pointerdown", function (e) {
    drag = {x: e.clientX, y: e.clientY, pan: e.shiftKey || e.button === 2};
    if (canvas.setPointerCapture) { canvas.setPointerCapture(e.pointerId); }
  });
  canvas.addEventListener("pointermove", function (e) {
    if (!drag) { return; }
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y; drag.x = e.clientX; drag.y = e.clientY;
    if (drag.pan) {
      var k = 2 * radius * 0.9 / zoom / canvas.clientHeight;
      pan[0] += dx * k; pan[1] -= dy * k;
    } else { rotate(1, dx * 0.01); rotate(0, dy * 0.01); }
    draw();
  });
  function endDrag() { drag = null; }
  canvas.addEventListener("pointerup", endDrag); canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault(); zoom = Math.min(20, Math.max(0.2, zoom * Math.exp(-e.deltaY * 0.0015))); draw();
  }, {passive: false});
  // structure list and presets
  var list = root.querySelector(".hp-structures");
  var boxes = structures.map(function (s) {
    var label = document.createElement("label"), box = document.createElement("input"), sw = document.createElement("span");
    box.type = "checkbox"; box.checked = s.visible;
    box.addEventListener("change", function () { s.visible = box.checked; draw(); });
    sw.className = "hp-swatch";
    sw.style.background = "rgb(" + s.colour.map(function (v) { return Math.round(v * 255); }).join(",") + ")";
    label.appendChild(box); label.appendChild(sw); label.appendChild(document.createTextNode(s.name));
    list.appendChild(label);
    return box;
  });
  Array.prototype.forEach.call(root.querySelectorAll("button[data-view]"), function (b) {
    b.addEventListener("click", function () { setView(b.getAttribute("data-view")); });
  });
  // liver opacity: scales the scene opacity of parenchyma (segments, liver, remnant, resected)
  var slider = root.querySelector("input.hp-opacity");
  function applyOpacity() {
    var f = slider ? Number(slider.value) / 100 : 1;
    structures.forEach(function (s) {
      s.opacity = s.parenchyma ? Math.min(1, s.baseOpacity * f) : s.baseOpacity;
    });
    draw();
  }
  if (slider) { slider.addEventListener("input", applyOpacity); }
  Array.prototype.forEach.call(root.querySelectorAll("button[data-scene]"), function (b) {
    b.addEventListener("click", function () {
      var scene = data.scenes[b.getAttribute("data-scene")] || {};
      structures.forEach(function (s, i) {
        s.visible = Object.prototype.hasOwnProperty.call(scene, s.name);
        if (s.visible) { s.baseOpacity = scene[s.name]; }
        boxes[i].checked = s.visible;
      });
      applyOpacity();
    });
  });
  window.addEventListener("resize", draw);
  root.setAttribute("data-webgl", isWebGL2 ? "2" : "1");
  // a link can open a given state:
  // report.html#view=superior&scene=before&hide=remnant,resected&opacity=150 (liver opacity %)
  var params = {};
  (window.location.hash || "").replace(/^#/, "").split("&").forEach(function (kv) {
    var i = kv.indexOf("="); if (i > 0) { params[kv.slice(0, i)] = decodeURIComponent(kv.slice(i + 1)); }
  });
  if (params.scene && data.scenes[params.scene]) {
    var sceneButton = root.querySelector("button[data-scene='" + params.scene + "']");
    if (sceneButton) { sceneButton.click(); }
  }
  if (params.opacity && slider) { slider.value = String(Number(params.opacity) || 100); applyOpacity(); }
  if (params.hide) {
    var hidden = params.hide.split(",");
    structures.forEach(function (s, i) {
      if (hidden.indexOf(s.name) >= 0) { s.visible = false; boxes[i].checked = false; }
    });
  }
  setView(data.views[params.view] ? params.view : data.initial_view);
})();
