/* pymortem report: draws the page from the reports' JSON that the library
   embedded in #pm-data (lib/report_html.c). Plain DOM and SVG, no library:
   the page must work from file:// with every request refused by its CSP.
   Every figure shown comes from that JSON as it is, so the page says what
   `pymortem REPORT --json` says of the same target. */
"use strict";

(function () {
  /* SVG's namespace as the HTML parser gives it (the page names no URL). */
  var SVGNS = (function () {
    var d = document.createElement("div");
    d.innerHTML = "<svg></svg>";
    return d.firstChild.namespaceURI;
  })();
  var DATA = JSON.parse(document.getElementById("pm-data").textContent);
  var R = DATA.reports || {};
  var main = document.getElementById("main");
  var tip = null;

  /* ------------------------------------------------------------ helpers */

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function svg(tag, attrs, children) {
    var e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }

  function setAttrs(e, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]);
    });
  }

  function append(e, children) {
    if (children === undefined || children === null) return;
    if (!Array.isArray(children)) children = [children];
    children.forEach(function (c) {
      if (c === undefined || c === null) return;
      e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    });
  }

  /* 1234567 -> "1,234,567", as the text reports print counts and bytes. */
  function grouped(n) {
    if (typeof n !== "number" || !isFinite(n)) return String(n);
    var neg = n < 0, s = String(Math.abs(Math.round(n))), out = "";
    while (s.length > 3) {
      out = "," + s.slice(-3) + out;
      s = s.slice(0, -3);
    }
    return (neg ? "-" : "") + s + out;
  }

  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, v = n;
    while (Math.abs(v) >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i ? v.toFixed(1) : String(v)) + " " + units[i];
  }

  function hex(n) {
    return typeof n === "number" ? "0x" + n.toString(16) : String(n);
  }

  function pct(part, whole) {
    return whole > 0 ? (100 * part / whole).toFixed(1) : "0.0";
  }

  /* A stable colour per name: hue from a string hash, within a family. */
  function hash(s) {
    var h = 2166136261;
    for (var i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 16777619) >>> 0;
    }
    return h;
  }

  var DOMAIN_HUES = { python: 215, cpython: 145, glibc: 30, pymalloc: 275,
                      numpy: 350, "ld.so": 55, other: 0 };

  function domainColour(domain, name, depth) {
    var hue = DOMAIN_HUES.hasOwnProperty(domain) ? DOMAIN_HUES[domain] : hash(domain) % 360;
    var h = hash(name || domain);
    var sat = domain === "other" ? 0 : 45 + (h % 25);
    var light = 42 + ((h >> 8) % 28) + (depth || 0) * 4;
    return "hsl(" + ((hue + (h >> 16) % 24 - 12 + 360) % 360) + "," + sat + "%," + light + "%)";
  }

  function showTip(evt, text) {
    if (!tip) {
      tip = el("div", { "class": "tip" });
      document.body.appendChild(tip);
    }
    tip.textContent = text;
    tip.style.display = "block";
    tip.style.left = Math.min(evt.clientX + 12, window.innerWidth - 540) + "px";
    tip.style.top = (evt.clientY + 14) + "px";
  }

  function hideTip() {
    if (tip) tip.style.display = "none";
  }

  function hover(node, text) {
    node.addEventListener("mousemove", function (e) { showTip(e, text); });
    node.addEventListener("mouseleave", hideTip);
  }

  function section(id, title, intro) {
    var s = el("section", { id: id }, [el("h2", null, title)]);
    if (intro) s.appendChild(el("p", { "class": "note" }, intro));
    main.appendChild(s);
    var toc = document.getElementById("toc");
    toc.appendChild(el("a", { href: "#" + id }, title));
    return s;
  }

  /* A report the library could not run carries {"error": message}. */
  function failed(report, s) {
    if (!report) {
      s.appendChild(el("p", { "class": "error" }, "not in this report"));
      return true;
    }
    if (report.error) {
      s.appendChild(el("p", { "class": "error" }, report.error));
      return true;
    }
    return false;
  }

  function figure(value, label) {
    return el("div", { "class": "figure" }, [el("b", null, value), el("span", null, label)]);
  }

  /* ------------------------------------------------------ sortable tables */

  /* columns: [{key, label, num, text(row) -> string, value(row)}]; every
     numeric cell keeps its JSON value in data-v (sorting, and the tests
     that compare the page with the CLI's JSON). */
  function table(name, columns, rows, limitNote) {
    var thead = el("tr");
    columns.forEach(function (c, i) {
      var th = el("th", { "class": c.num ? "num" : null, "data-col": c.key }, c.label);
      th.addEventListener("click", function () { sortBy(tbl, i, c.num); });
      thead.appendChild(th);
    });
    var tbody = el("tbody");
    rows.forEach(function (r) {
      var tr = el("tr");
      columns.forEach(function (c) {
        var v = c.value ? c.value(r) : r[c.key];
        var text = c.text ? c.text(r, v) : (c.num ? grouped(v) : (v === null || v === undefined ? "" : String(v)));
        var td = el("td", { "class": c.num ? "num" : (c.path ? "path" : null),
                            "data-col": c.key, "data-v": c.num ? String(v) : null }, text);
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    var tbl = el("table", { "data-table": name }, [el("thead", null, thead), tbody]);
    var wrap = el("div", { "class": "scroll" }, tbl);
    if (limitNote) wrap.appendChild(el("p", { "class": "note" }, limitNote));
    return wrap;
  }

  function sortBy(tbl, col, numeric) {
    var ths = tbl.querySelectorAll("th");
    var th = ths[col];
    var desc = !th.classList.contains("sorted-desc");
    for (var i = 0; i < ths.length; i++) ths[i].classList.remove("sorted-asc", "sorted-desc");
    th.classList.add(desc ? "sorted-desc" : "sorted-asc");
    var body = tbl.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col], y = b.cells[col], d;
      if (numeric) d = Number(x.getAttribute("data-v")) - Number(y.getAttribute("data-v"));
      else d = x.textContent.localeCompare(y.textContent);
      return desc ? -d : d;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  /* ------------------------------------------------------------ overview */

  function overview() {
    var info = R.info && !R.info.error ? R.info : null;
    var sum = R.summary && !R.summary.error ? R.summary : null;
    var line = [DATA.source || "target"];
    if (info && info.executable) line.push(info.executable.path || info.executable);
    if (sum && sum.python && sum.python.found) line.push("CPython " + sum.python.version);
    if (info && info.glibc && info.glibc.version) line.push("glibc " + info.glibc.version);
    line.push("pymortem " + DATA.pymortem);
    document.getElementById("target").textContent = line.join(" \u00b7 ");
    var s = section("overview", "Overview");
    var figs = el("div", { "class": "figures" });
    if (sum) {
      figs.appendChild(figure(human(sum.total.bytes), "heap in use (" + grouped(sum.total.bytes) + " bytes)"));
      figs.appendChild(figure(grouped(sum.total.count), "allocations"));
      if (typeof sum.objects === "number") figs.appendChild(figure(grouped(sum.objects), "Python objects"));
    }
    var rss = R.rss && !R.rss.error ? R.rss : null;
    if (rss && rss.total) figs.appendChild(figure(human(rss.total.resident), "resident of " + human(rss.total.bytes) + " writable"));
    var frag = R.fragmentation && !R.fragmentation.error ? R.fragmentation : null;
    if (frag && typeof frag.malloc_trim_returns === "number") figs.appendChild(figure(human(frag.malloc_trim_returns), "malloc_trim(0) would return"));
    var waste = R.waste && !R.waste.error ? R.waste : null;
    if (waste && typeof waste.total_saving === "number") figs.appendChild(figure(human(waste.total_saving), "fixing the waste findings would save (up to)"));
    s.appendChild(figs);
    /* The leak suspects first: the one line most worth reading. */
    var sus = R.suspects && !R.suspects.error ? R.suspects.suspects || [] : [];
    sus.forEach(function (x) {
      s.appendChild(el("p", { "class": "partial" }, [el("b", null, "leak suspect: "), x.text]));
    });
    /* What makes figures partial, and problems met, from any report. */
    var seen = {};
    Object.keys(R).forEach(function (k) {
      var rep = R[k];
      if (!rep || rep.error) return;
      (rep.partial_reasons || []).forEach(function (p) {
        if (seen[p.message]) return;
        seen[p.message] = 1;
        s.appendChild(el("p", { "class": "partial" }, "partial: " + p.message));
      });
    });
    var warnings = 0;
    Object.keys(R).forEach(function (k) {
      if (R[k] && typeof R[k].warning_count === "number") warnings = Math.max(warnings, R[k].warning_count);
    });
    if (warnings) s.appendChild(el("p", { "class": "note" }, warnings + " problems did not stop the analysis (see the reports' warnings)"));
    if (sum && sum.notes) sum.notes.forEach(function (n) {
      s.appendChild(el("p", { "class": "note" }, typeof n === "string" ? n : (n.message || JSON.stringify(n))));
    });
  }

  /* ------------------------------------------------------------- treemap */

  /* Squarified treemap (Bruls, Huizing, van Wijk): rows of rectangles laid
     along the shorter side, a row closed when adding one more would make
     its worst aspect ratio worse. No padding: every leaf's area is exactly
     its share of the whole, so areas compare across groups. */
  function squarify(nodes, x, y, w, h, place) {
    var total = 0;
    nodes.forEach(function (n) { total += n.value; });
    if (total <= 0 || w <= 0 || h <= 0) return;
    var scale = w * h / total, i = 0;
    while (i < nodes.length) {
      var side = Math.min(w, h), row = [], sum = 0, best = Infinity, rmax = 0, rmin = Infinity;
      while (i < nodes.length) {
        var a = nodes[i].value * scale;
        var s = sum + a, mx = Math.max(rmax, a), mn = Math.min(rmin, a);
        var worst = Math.max(side * side * mx / (s * s), s * s / (side * side * mn));
        if (row.length && worst > best) break;
        row.push(nodes[i]);
        sum = s; best = worst; rmax = mx; rmin = mn;
        i++;
      }
      var last = i >= nodes.length;
      if (w >= h) {
        var cw = last ? w : sum / h, cy = y;
        row.forEach(function (n, k) {
          var nh = k === row.length - 1 ? y + h - cy : n.value * scale / cw;
          place(n, x, cy, cw, nh);
          cy += nh;
        });
        x += cw; w -= cw;
      } else {
        var rh = last ? h : sum / w, cx = x;
        row.forEach(function (n, k) {
          var nw = k === row.length - 1 ? x + w - cx : n.value * scale / rh;
          place(n, cx, y, nw, rh);
          cx += nw;
        });
        y += rh; h -= rh;
      }
    }
  }

  /* domain -> kind -> owner (the summary by owner's detail, when it names
     one) from the summary's rows; the rows not shown are one leaf. */
  function hierarchy(rep) {
    var root = { name: "heap", value: 0, children: [], index: {} };
    function child(parent, name) {
      var c = parent.index[name];
      if (!c) {
        c = { name: name, value: 0, children: [], index: {}, parent: parent };
        parent.index[name] = c;
        parent.children.push(c);
      }
      return c;
    }
    /* Every row is a leaf of its own, under its kind (a kind may have a
       row without an owner and rows with one). */
    function add(row, domain, kind, owner) {
      if (!(row.bytes > 0)) return;
      var k = child(child(root, domain), kind);
      var leaf = { name: owner || kind, value: 0, children: [], row: row, leaf: true, parent: k };
      k.children.push(leaf);
      for (var n = leaf; n; n = n.parent) n.value += row.bytes;
    }
    rep.rows.forEach(function (r) {
      add(r, r.domain, r.kind, r.detail && r.detail !== "-" ? r.detail : null);
    });
    var rest = rep.rows_not_shown;
    if (rest && rest.bytes > 0)
      add({ domain: "other", kind: rest.rows + " smaller rows", detail: "-", count: rest.count, bytes: rest.bytes },
          "other", rest.rows + " smaller rows", null);
    (function sort(n) {
      n.children.sort(function (a, b) { return b.value - a.value; });
      n.children.forEach(sort);
    })(root);
    return root;
  }

  function treemap() {
    var rep = R.owners;
    var s = section("treemap", "What fills the heap",
      "Bytes in use by domain, then type, then owner (summary --by owner): each rectangle's area is its share of " +
      "the heap; thick lines enclose a domain. Hover for figures.");
    if (failed(rep, s)) return;
    var W = 1200, H = 560;
    var root = hierarchy(rep);
    var g = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, id: "treemap-svg",
                         "data-total": String(root.value) });
    var outlines = [], labels = [];
    function layout(node, x, y, w, h, depth) {
      if (node.leaf) {
        var r = node.row;
        var path = [r.domain, r.kind].concat(r.detail && r.detail !== "-" ? [r.detail] : []).join(" \u203a ");
        var rect = svg("rect", { "class": "leaf", x: x.toFixed(3), y: y.toFixed(3),
                                 width: w.toFixed(3), height: h.toFixed(3),
                                 fill: domainColour(r.domain, r.kind + "/" + (r.detail || ""), depth),
                                 "data-bytes": String(r.bytes), "data-count": String(r.count),
                                 "data-label": path });
        hover(rect, path + "\n" + grouped(r.bytes) + " bytes (" + pct(r.bytes, root.value) + "%), " +
              grouped(r.count) + " allocations");
        g.appendChild(rect);
        if (w > 60 && h > 16) labels.push([x, y, w, h, r.detail && r.detail !== "-" ? r.kind + " \u00b7 " + r.detail : r.kind, r.bytes]);
        return;
      }
      if (depth === 1) outlines.push([x, y, w, h, node.name]);
      squarify(node.children, x, y, w, h, function (c, cx, cy, cw, ch) {
        layout(c, cx, cy, cw, ch, depth + 1);
      });
    }
    layout(root, 0, 0, W, H, 0);
    outlines.forEach(function (o) {
      g.appendChild(svg("rect", { "class": "group", x: o[0], y: o[1], width: o[2], height: o[3] }));
    });
    labels.forEach(function (l) {
      var maxChars = Math.floor((l[2] - 6) / 6.2);
      var name = l[4].length > maxChars ? l[4].slice(0, Math.max(1, maxChars - 1)) + "\u2026" : l[4];
      g.appendChild(svg("text", { x: l[0] + 3, y: l[1] + 12, fill: "#fff" }, name));
      if (l[3] > 30) g.appendChild(svg("text", { x: l[0] + 3, y: l[1] + 25, fill: "#fff" }, human(l[5])));
    });
    s.appendChild(el("div", { "class": "scroll" }, g));
    var legend = el("div", { "class": "legend" });
    root.children.forEach(function (d) {
      legend.appendChild(el("span", null, [el("i", { style: "background:" + domainColour(d.name, d.name, 0) }),
                                           d.name + " " + human(d.value) + " (" + pct(d.value, root.value) + "%)"]));
    });
    s.appendChild(legend);
  }

  /* ------------------------------------------------------- address space */

  var REGION_KINDS = [
    ["pymalloc", /pymalloc arena/, "hsl(275,50%,58%)"],
    ["mmapped chunk", /mmapped chunk/, "hsl(30,70%,60%)"],
    ["glibc heap", /glibc .*heap|arena/, "hsl(30,75%,45%)"],
    ["stack", /stack/, "hsl(0,55%,55%)"],
    ["module", /^module/, "hsl(205,45%,55%)"],
    ["file", /^file/, "hsl(190,30%,65%)"],
    ["kernel", /vdso|vvar|vsyscall/, "hsl(0,0%,55%)"],
    ["anonymous", /./, "hsl(60,20%,70%)"]
  ];

  function regionKind(label) {
    for (var i = 0; i < REGION_KINDS.length; i++)
      if (REGION_KINDS[i][1].test(label || "")) return REGION_KINDS[i];
    return REGION_KINDS[REGION_KINDS.length - 1];
  }

  var PART_GROUPS = { "in use": "hsl(215,60%,45%)", "free": "hsl(45,90%,55%)",
                      "overhead": "hsl(0,60%,55%)", "not allocator memory": "hsl(0,0%,75%)" };

  /* Mappings to scale on a log axis (a mapping's width grows with log2 of
     its size: 4 KiB and 4 GiB both stay visible), in address order, wrapped
     into rows; a gap between mappings is a narrow grey bar. Inside each:
     the allocator areas the region holds and, for writable memory, how the
     rss report splits it (in use, free in the allocators, overhead). */
  function addressMap() {
    var rep = R.regions;
    var s = section("addresses", "Address space",
      "Every mapping in address order, its width logarithmic in its size, coloured by what it is. " +
      "Middle band: the allocator areas inside it; bottom band: its bytes in use, free in the allocators " +
      "and overhead (rss report). Grey slivers are unmapped gaps.");
    if (failed(rep, s)) return;
    var rssByStart = {};
    if (R.rss && !R.rss.error && R.rss.regions) {
      R.rss.regions.forEach(function (r) { rssByStart[r.start] = r; });
    }
    var partGroup = {};
    if (R.rss && !R.rss.error && R.rss.parts)
      Object.keys(R.rss.parts).forEach(function (k) { partGroup[k] = R.rss.parts[k].group; });
    var W = 1200, ROW = 46, GAP = 5, x = 0, y = 0, items = [];
    var prevEnd = null;
    rep.regions.forEach(function (r) {
      if (prevEnd !== null && r.start > prevEnd) items.push({ gap: r.start - prevEnd, start: prevEnd });
      items.push({ region: r });
      prevEnd = r.end;
    });
    items.forEach(function (it) {
      it.w = it.gap ? GAP : Math.max(6, 6 + 12 * Math.log2(Math.max(1, it.region.size / 4096)));
      if (x + it.w > W) { x = 0; y += ROW + 6; }
      it.x = x; it.y = y;
      x += it.w + 1;
    });
    var H = y + ROW + 2;
    var g = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, id: "address-svg" });
    items.forEach(function (it) {
      if (it.gap) {
        var gap = svg("rect", { "class": "gap", x: it.x, y: it.y + 8, width: it.w, height: ROW - 16 });
        hover(gap, "unmapped: " + human(it.gap) + " from " + hex(it.start));
        g.appendChild(gap);
        return;
      }
      var r = it.region, kind = regionKind(r.label);
      var box = svg("rect", { "class": "region", x: it.x.toFixed(2), y: it.y, width: it.w.toFixed(2), height: ROW,
                              fill: kind[2], "data-start": String(r.start), "data-size": String(r.size),
                              "data-kind": kind[0] });
      var text = hex(r.start) + "-" + hex(r.end) + " " + r.perms + "  " + human(r.size) + "\n" + r.label +
        (r.path ? "\n" + r.path : "");
      (r.areas || []).forEach(function (a) {
        text += "\n  " + a.label + " x" + a.count + ": " + human(a.bytes);
      });
      var rr = rssByStart[r.start];
      if (rr && rr.parts) {
        Object.keys(rr.parts).forEach(function (k) {
          var name = R.rss.parts[k] ? R.rss.parts[k].name : k;
          text += "\n  " + name + ": " + human(rr.parts[k].bytes) + " (" + human(rr.parts[k].resident) + " resident)";
        });
      }
      hover(box, text);
      g.appendChild(box);
      /* Allocator areas, proportional within the region. */
      var ax = it.x;
      (r.areas || []).forEach(function (a) {
        var aw = it.w * Math.min(1, a.bytes / r.size);
        g.appendChild(svg("rect", { x: ax.toFixed(2), y: it.y + 16, width: aw.toFixed(2), height: 12,
                                    fill: regionKind(a.label)[2], stroke: "#fff", "stroke-width": 0.5,
                                    "pointer-events": "none" }));
        ax += aw;
      });
      if (rr && rr.parts && rr.total && rr.total.bytes > 0) {
        var byGroup = {};
        Object.keys(rr.parts).forEach(function (k) {
          var grp = partGroup[k] || "not allocator memory";
          byGroup[grp] = (byGroup[grp] || 0) + rr.parts[k].bytes;
        });
        var px = it.x;
        Object.keys(PART_GROUPS).forEach(function (grp) {
          if (!byGroup[grp]) return;
          var pw = it.w * byGroup[grp] / rr.total.bytes;
          g.appendChild(svg("rect", { x: px.toFixed(2), y: it.y + 30, width: pw.toFixed(2), height: 14,
                                      fill: PART_GROUPS[grp], "pointer-events": "none" }));
          px += pw;
        });
      }
      if (it.w > 70)
        g.appendChild(svg("text", { x: it.x + 3, y: it.y + 12, fill: "#111" }, human(r.size)));
    });
    s.appendChild(el("div", { "class": "scroll" }, g));
    var legend = el("div", { "class": "legend" });
    REGION_KINDS.forEach(function (k) {
      legend.appendChild(el("span", null, [el("i", { style: "background:" + k[2] }), k[0]]));
    });
    Object.keys(PART_GROUPS).forEach(function (k) {
      legend.appendChild(el("span", null, [el("i", { style: "background:" + PART_GROUPS[k] }), k]));
    });
    s.appendChild(legend);
  }

  /* ------------------------------------------------------- fragmentation */

  var FREE_CLASSES = [["tcache", "hsl(45,90%,60%)"], ["fastbin", "hsl(35,90%,55%)"],
                      ["unsorted", "hsl(25,85%,55%)"], ["small", "hsl(15,80%,55%)"],
                      ["large", "hsl(5,75%,55%)"], ["top", "hsl(50,40%,70%)"]];

  function stackedBar(total, parts, width) {
    var g = svg("svg", { width: width, height: 16 });
    var x = 0;
    parts.forEach(function (p) {
      if (!(p[1] > 0) || !(total > 0)) return;
      var w = width * p[1] / total;
      var r = svg("rect", { x: x.toFixed(2), y: 0, width: w.toFixed(2), height: 16, fill: p[2] });
      hover(r, p[0] + ": " + grouped(p[1]) + " bytes (" + pct(p[1], total) + "%)");
      g.appendChild(r);
      x += w;
    });
    return g;
  }

  function fragmentation() {
    var rep = R.fragmentation;
    var s = section("fragmentation", "Fragmentation",
      "Free memory the allocators keep, per arena, and what would give it back.");
    if (failed(rep, s)) return;
    var gl = rep.glibc;
    if (gl && gl.arenas) {
      s.appendChild(el("h3", null, "glibc arenas (malloc_trim(0) would return " + grouped(rep.malloc_trim_returns) + " bytes)"));
      var legend = el("div", { "class": "legend" }, el("span", null, [el("i", { style: "background:hsl(215,60%,45%)" }), "in use"]));
      FREE_CLASSES.forEach(function (c) {
        legend.appendChild(el("span", null, [el("i", { style: "background:" + c[1] }), "free: " + c[0]]));
      });
      s.appendChild(legend);
      var rows = el("div");
      gl.arenas.forEach(function (a) {
        var parts = [["in use", a.in_use, "hsl(215,60%,45%)"]];
        FREE_CLASSES.forEach(function (c) {
          if (a.free && a.free[c[0]]) parts.push(["free: " + c[0], a.free[c[0]].bytes, c[1]]);
        });
        rows.appendChild(el("div", null, [
          el("code", null, hex(a.address) + (a.main ? " (main)" : "") + " "),
          stackedBar(a.mapped, parts, 700),
          " " + human(a.mapped) + " mapped, trim returns " + human(a.malloc_trim_returns)]));
      });
      s.appendChild(rows);
      s.appendChild(table("fragmentation-arenas", [
        { key: "address", label: "arena", text: function (r) { return hex(r.address) + (r.main ? " (main)" : ""); } },
        { key: "mapped", label: "mapped", num: true },
        { key: "in_use", label: "in use", num: true },
        { key: "free", label: "free", num: true, value: function (r) {
          var t = 0;
          FREE_CLASSES.forEach(function (c) { if (r.free && r.free[c[0]]) t += r.free[c[0]].bytes; });
          return t;
        } },
        { key: "top_size", label: "top chunk", num: true },
        { key: "malloc_trim_returns", label: "trim returns", num: true }
      ], gl.arenas));
      if (gl.mmapped_chunks)
        s.appendChild(el("p", { "class": "note" }, gl.mmapped_chunks.count + " mmapped chunks, " +
          grouped(gl.mmapped_chunks.value.bytes) + " bytes (returned to the system when freed)"));
    }
    var pm = rep.pymalloc;
    if (pm && pm.found && pm.arena_list) {
      var poolsPerArena = pm.arena_size && pm.pool_size ? Math.floor(pm.arena_size / pm.pool_size) : 0;
      s.appendChild(el("h3", null, "pymalloc arenas: " + pm.arenas + " (" + pm.used_pools + " pools used, " +
        pm.empty_pools + " empty, " + pm.never_used_pools + " never used)"));
      s.appendChild(el("p", { "class": "note" }, "One bar per arena: used pools (blue), empty (yellow), never carved (grey); " +
        "a red outline marks an arena a few live blocks pin."));
      var n = pm.arena_list.length, per = 6, cell = 190;
      var H = Math.ceil(n / per) * 22 + 2;
      var g = svg("svg", { width: per * cell, height: H, id: "pymalloc-svg" });
      pm.arena_list.forEach(function (a, i) {
        var x = (i % per) * cell, y = Math.floor(i / per) * 22, total = a.used_pools + a.empty_pools + a.never_used_pools;
        total = Math.max(total, poolsPerArena, 1);
        var w = cell - 8, px = x;
        [[a.used_pools, "hsl(215,60%,45%)"], [a.empty_pools, "hsl(45,90%,55%)"], [a.never_used_pools, "hsl(0,0%,78%)"]].forEach(function (p) {
          var pw = w * p[0] / total;
          g.appendChild(svg("rect", { x: px.toFixed(2), y: y + 2, width: pw.toFixed(2), height: 16, fill: p[1] }));
          px += pw;
        });
        var frame = svg("rect", { x: x, y: y + 2, width: w, height: 16, fill: "transparent",
                                  stroke: a.pinned ? "#c0392b" : "#999", "stroke-width": a.pinned ? 2 : 0.5 });
        hover(frame, hex(a.address) + ": " + a.used_pools + " used, " + a.empty_pools + " empty, " +
          a.never_used_pools + " never used pools; " + grouped(a.used_blocks) + " blocks (" + grouped(a.used_bytes) +
          " bytes) in use" + (a.pinned ? "; pinned" : ""));
        g.appendChild(frame);
      });
      s.appendChild(el("div", { "class": "scroll" }, g));
      s.appendChild(table("pymalloc-arenas", [
        { key: "address", label: "arena", text: function (r) { return hex(r.address); } },
        { key: "used_pools", label: "used pools", num: true },
        { key: "empty_pools", label: "empty pools", num: true },
        { key: "never_used_pools", label: "never used", num: true },
        { key: "used_blocks", label: "blocks", num: true },
        { key: "used_bytes", label: "bytes in use", num: true },
        { key: "pinned", label: "pinned", text: function (r) { return r.pinned ? "yes" : ""; } }
      ], pm.arena_list));
      if (pm.pinned && pm.pinned.list && pm.pinned.list.length) {
        /* The live blocks of each pinned arena: what to free to unmap it. */
        var blocks = [];
        pm.pinned.list.forEach(function (a) {
          (a.blocks || []).forEach(function (b) {
            blocks.push({ arena: a.address, address: b.address, size: b.size, kind: b.kind, path: b.path });
          });
        });
        s.appendChild(el("h3", null, "blocks pinning arenas: " + pm.pinned.arenas + " arenas (" +
          grouped(pm.pinned.bytes) + " bytes) kept by " + grouped(pm.pinned.blocks) + " live blocks"));
        s.appendChild(table("pinned", [
          { key: "arena", label: "arena", text: function (r) { return hex(r.arena); } },
          { key: "address", label: "block", text: function (r) { return hex(r.address); } },
          { key: "size", label: "size", num: true },
          { key: "kind", label: "kind" },
          { key: "path", label: "held by", path: true }
        ], blocks));
      }
    }
    (rep.advice || []).forEach(function (a) {
      s.appendChild(el("p", { "class": "advice" }, "advice: " + (typeof a === "string" ? a : (a.text || JSON.stringify(a)))));
    });
  }

  /* ----------------------------------------------------------- retention */

  function retention() {
    var rep = R.retained;
    var s = section("retention", "What keeps memory alive",
      "The objects retaining the most (dominator tree): freeing one frees its retained bytes. Module namespaces are left out for what they hold.");
    var sus = R.suspects;
    if (sus && !sus.error && sus.suspects) {
      sus.suspects.forEach(function (x) {
        s.appendChild(el("p", { "class": "partial" }, "leak suspect: " + x.text));
      });
    }
    if (failed(rep, s)) return;
    var heap = rep.heap_bytes || 1, max = 0;
    rep.objects.forEach(function (o) { max = Math.max(max, o.retained); });
    s.appendChild(el("p", { "class": "note" }, "heap " + grouped(rep.heap_bytes) + " bytes; reached from roots " +
      grouped(rep.reached_bytes) + "; unreached " + grouped(rep.unreached.bytes) + " bytes in " + grouped(rep.unreached.count) + " objects"));
    s.appendChild(table("retained", [
      { key: "type", label: "type" },
      { key: "own", label: "own", num: true },
      { key: "retained", label: "retained", num: true },
      { key: "share", label: "% heap", num: true, value: function (o) { return Number(pct(o.retained, heap)); },
        text: function (o, v) { return v.toFixed(1); } },
      { key: "bar", label: "", text: function (o) {
        return el("span", { "class": "bar", style: "width:" + Math.max(1, Math.round(160 * o.retained / (max || 1))) + "px" });
      } },
      { key: "count", label: "objects", num: true },
      { key: "address", label: "address", text: function (o) { return hex(o.address); } },
      { key: "path", label: "held by", path: true }
    ], rep.objects));
  }

  /* --------------------------------------------------------------- waste */

  function waste() {
    var rep = R.waste;
    var s = section("waste", "Waste",
      "Memory a change to the program would save, largest saving first (findings may overlap).");
    if (failed(rep, s)) return;
    s.appendChild(el("p", null, rep.findings.length + " findings; fixing them would save up to " + human(rep.total_saving) +
      " (" + grouped(rep.total_saving) + " bytes)"));
    s.appendChild(table("waste", [
      { key: "title", label: "finding" },
      { key: "cost", label: "costs", num: true },
      { key: "saving", label: "a fix saves", num: true },
      { key: "bar", label: "", text: function (f) {
        var max = 1;
        rep.findings.forEach(function (x) { max = Math.max(max, x.cost); });
        return stackedBar(max, [["saving", f.saving, "hsl(145,50%,40%)"],
                                ["rest of the cost", f.cost - f.saving, "hsl(145,30%,75%)"]], 160);
      } },
      { key: "advice", label: "advice" }
    ], rep.findings));
    var addr = { key: "address", label: "address", text: function (r) { return r.address === undefined ? "" : hex(r.address); } };
    var heldBy = { key: "path", label: "held by", path: true };
    rep.findings.forEach(function (f) {
      var name = "waste-" + f.finding + "-" + f.type, t = null;
      if (f.values && f.values.length) {
        t = table(name, [{ key: "value", label: "value", path: true },
                         { key: "copies", label: "copies", num: true },
                         { key: "bytes", label: "bytes", num: true },
                         { key: "saving", label: "saving", num: true },
                         addr, heldBy],
                  f.values.map(function (v) {
                    var ex = v.examples && v.examples[0] ? v.examples[0] : {};
                    return { value: v.value, copies: v.copies, bytes: v.bytes, saving: v.saving,
                             address: ex.address, path: ex.path };
                  }));
      } else if (f.classes && f.classes.length) {
        t = table(name, [{ key: "class", label: "class" },
                         { key: "instances", label: "instances", num: true },
                         { key: "bytes_now", label: "bytes now", num: true },
                         { key: "bytes_slotted", label: "slotted", num: true },
                         { key: "saving", label: "saving", num: true },
                         { key: "slots", label: "__slots__", path: true }], f.classes);
      } else if (f.examples && f.examples.length) {
        t = table(name, [{ key: "type", label: "type" },
                         { key: "bytes", label: "bytes", num: true },
                         { key: "used", label: "used", num: true },
                         { key: "capacity", label: "capacity", num: true },
                         addr, heldBy], f.examples);
      }
      if (!t) return;
      var d = el("details", { "class": "finding" }, el("summary", null, f.title + ": the largest"));
      d.appendChild(t);
      s.appendChild(d);
    });
  }

  /* -------------------------------------------------------------- growth */

  /* How the target grew since an earlier state (DATA.diff: diff's JSON,
     present when the page was made with BEFORE): the TOTAL's change, a bar
     per changed row (its width is its bytes' change over the largest one's,
     growth to the right of the axis, shrinkage to the left), every changed
     row, and for the same process the new and gone allocations by type. */
  function growth() {
    if (!DATA.diff) return;
    var s = section("growth", "Growth", DATA.diff_command ? "As `" + DATA.diff_command + " AFTER` says." : null);
    if (failed(DATA.diff, s)) return;
    var d = DATA.diff;
    var side = function (x) { return x.source + (x.python ? ", CPython " + x.python : ""); };
    s.appendChild(el("p", null, "before: " + side(d.before) + "; after: " + side(d.after) + (d.same_process ?
      ": the same process" : ": different processes (rows only)")));
    var figs = el("div", { "class": "figures" });
    var signed = function (n) { return (n > 0 ? "+" : "") + grouped(n); };
    figs.appendChild(figure(signed(d.total.bytes_delta), "bytes (" + human(d.total.bytes_before) + " \u2192 " + human(d.total.bytes_after) + ")"));
    figs.appendChild(figure(signed(d.total.count_delta), "allocations"));
    if (d.new) figs.appendChild(figure(grouped(d.new.count), "new allocations (" + human(d.new.bytes) + ")"));
    if (d.gone) figs.appendChild(figure(grouped(d.gone.count), "gone (" + human(d.gone.bytes) + ")"));
    s.appendChild(figs);
    var changed = d.rows.filter(function (r) { return r.bytes_delta || r.count_delta; });
    var bars = changed.slice(0, 20);
    var largest = 0;
    bars.forEach(function (r) { largest = Math.max(largest, Math.abs(r.bytes_delta)); });
    if (bars.length && largest) {
      var W = 1000, half = 300, rowH = 18, labelX = half * 2 + 10;
      var g = svg("svg", { viewBox: "0 0 " + W + " " + (bars.length * rowH + 4), width: "100%", "class": "growth", "data-chart": "growth" });
      g.appendChild(svg("line", { x1: half, x2: half, y1: 0, y2: bars.length * rowH + 4, stroke: "#666" }));
      bars.forEach(function (r, i) {
        var w = Math.abs(r.bytes_delta) / largest * half;
        var x = r.bytes_delta >= 0 ? half : half - w;
        var name = r.domain + " " + r.kind + (r.detail && r.detail !== "-" ? " " + r.detail : "");
        var bar = svg("rect", { x: x, y: i * rowH + 2, width: w, height: rowH - 4,
                                fill: r.bytes_delta >= 0 ? "hsl(0,65%,55%)" : "hsl(140,45%,45%)",
                                "data-bytes-delta": String(r.bytes_delta), "data-name": name });
        hover(bar, name + ": " + signed(r.bytes_delta) + " bytes, " + signed(r.count_delta) + " allocations");
        g.appendChild(bar);
        var label = svg("text", { x: labelX, y: i * rowH + rowH - 5, "font-size": 12 });
        label.textContent = name + "  " + signed(r.bytes_delta) + " B";
        g.appendChild(label);
      });
      s.appendChild(g);
    }
    var num = function (key, label) { return { key: key, label: label, num: true }; };
    var delta = function (key, label) {
      return { key: key, label: label, num: true, text: function (r, v) { return signed(v); } };
    };
    s.appendChild(table("diff", [
      { key: "domain", label: "domain" }, { key: "kind", label: "kind", path: true }, { key: "detail", label: "detail" },
      num("count_before", "count before"), num("count_after", "count after"), delta("count_delta", "count +/-"),
      num("bytes_before", "bytes before"), num("bytes_after", "bytes after"), delta("bytes_delta", "bytes +/-")
    ], changed, d.changed_rows > changed.length ?
      (d.changed_rows - changed.length) + " more changed rows (`pymortem diff --top 0` shows them)" : null));
    s.appendChild(el("p", { "class": "note", "data-total-count-delta": String(d.total.count_delta),
                            "data-total-bytes-delta": String(d.total.bytes_delta) },
      "TOTAL " + signed(d.total.count_delta) + " allocations, " + signed(d.total.bytes_delta) + " bytes"));
    [["new", d.new, "new allocations (not in use at that address, or in use as something else, before)"],
     ["gone", d.gone, "allocations gone"]].forEach(function (part) {
      if (!part[1]) return;
      s.appendChild(el("h3", null, part[2]));
      s.appendChild(table("diff-" + part[0], [
        { key: "domain", label: "domain" }, { key: "kind", label: "kind" }, { key: "detail", label: "detail" },
        num("count", "count"), num("bytes", "bytes"),
        { key: "examples", label: "examples", path: true, value: function (c) {
          return (c.examples || []).map(function (e) {
            return hex(e.address) + (e.preview ? " " + e.preview : "");
          }).join("  \u00b7  ");
        } }
      ], part[1].by_category));
    });
  }

  /* -------------------------------------------------------------- tables */

  function tables() {
    var s = section("tables", "Every report's rows", "Click a column's name to sort by it.");
    function sub(title, rep, build) {
      var d = el("details", null, el("summary", null, title));
      if (!rep || rep.error) d.appendChild(el("p", { "class": "error" }, rep ? rep.error : "not in this report"));
      else build(d, rep);
      s.appendChild(d);
    }
    function summaryTable(name) {
      return function (d, rep) {
        var total = rep.total.bytes;
        d.appendChild(table(name, [
          { key: "domain", label: "domain" }, { key: "kind", label: "kind" }, { key: "detail", label: "detail" },
          { key: "count", label: "count", num: true }, { key: "bytes", label: "bytes", num: true },
          { key: "share", label: "% bytes", num: true, value: function (r) { return Number(pct(r.bytes, total)); },
            text: function (r, v) { return v.toFixed(1); } }
        ], rep.rows, rep.rows_not_shown && rep.rows_not_shown.rows ?
          rep.rows_not_shown.rows + " more rows: " + grouped(rep.rows_not_shown.count) + " allocations, " +
          grouped(rep.rows_not_shown.bytes) + " bytes" : null));
        d.appendChild(el("p", { "class": "note", "data-total-count": String(rep.total.count),
                                "data-total-bytes": String(rep.total.bytes) },
          "TOTAL " + grouped(rep.total.count) + " allocations, " + grouped(rep.total.bytes) + " bytes"));
      };
    }
    sub("summary by type", R.summary, summaryTable("summary"));
    sub("summary by owner", R.owners, summaryTable("owners"));
    sub("regions", R.regions, function (d, rep) {
      d.appendChild(table("regions", [
        { key: "start", label: "start", num: true, text: function (r) { return hex(r.start); } },
        { key: "end", label: "end", num: true, text: function (r) { return hex(r.end); } },
        { key: "size", label: "size", num: true }, { key: "perms", label: "perms" },
        { key: "label", label: "label" }, { key: "path", label: "path", path: true }
      ], rep.regions));
    });
    sub("rss: parts", R.rss, function (d, rep) {
      var rows = Object.keys(rep.parts).map(function (k) {
        var p = rep.parts[k];
        return { key: k, name: p.name, group: p.group, bytes: p.value.bytes, resident: p.value.resident, swapped: p.value.swapped };
      });
      d.appendChild(table("rss-parts", [
        { key: "name", label: "part" }, { key: "group", label: "group" },
        { key: "bytes", label: "bytes", num: true }, { key: "resident", label: "resident", num: true },
        { key: "swapped", label: "swapped", num: true }
      ], rows));
      d.appendChild(el("p", { "class": "note" }, "total " + grouped(rep.total.bytes) + " bytes, " + grouped(rep.total.resident) +
        " resident (" + rep.residency_source + ")"));
    });
    sub("rss: regions", R.rss, function (d, rep) {
      d.appendChild(table("rss-regions", [
        { key: "start", label: "start", num: true, text: function (r) { return hex(r.start); } },
        { key: "label", label: "label" },
        { key: "bytes", label: "bytes", num: true, value: function (r) { return r.total.bytes; } },
        { key: "resident", label: "resident", num: true, value: function (r) { return r.total.resident; } },
        { key: "path", label: "path", path: true }
      ], rep.regions));
    });
    sub("suspects", R.suspects, function (d, rep) {
      d.appendChild(table("suspects", [
        { key: "type", label: "type", value: function (r) { return r.object.type; } },
        { key: "retained", label: "retained", num: true, value: function (r) { return r.object.retained; } },
        { key: "text", label: "why", path: true }
      ], rep.suspects));
    });
    sub("modules (info)", R.info, function (d, rep) {
      var mods = rep.modules || [];
      d.appendChild(table("modules", [
        { key: "path", label: "module", path: true, value: function (m) { return m.path || m.name || ""; } },
        { key: "start", label: "start", num: true, text: function (m) { return m.start === undefined ? "" : hex(m.start); },
          value: function (m) { return m.start === undefined ? 0 : m.start; } }
      ], mods));
    });
  }

  /* ------------------------------------------------------------------ go */

  var noscript = document.getElementById("noscript");
  if (noscript) noscript.parentNode.removeChild(noscript);
  [overview, growth, treemap, addressMap, fragmentation, retention, waste, tables].forEach(function (draw) {
    try {
      draw();
    } catch (e) {
      /* One section's problem (an unexpected shape of a report) must not
         blank the rest of the page. */
      main.appendChild(el("p", { "class": "error" }, "could not draw a section: " + e));
    }
  });
  document.body.setAttribute("data-drawn", "yes");
})();
