/* Ly's map page: one layer per theme (points in marker clusters, areas as polygons), their
 * popups, filters, colours and legends.
 *
 * The server builds the Leaflet map with folium, describes each theme's layer (cfg.options.
 * layers: its attributes, filters and colours, all from the theme's descriptor) and embeds
 * the objects the viewer may see as GeoJSON, one <script type="application/json"
 * id="ly-features-{theme}"> per theme. Filtering and colouring happen here, without the
 * server, so they work offline; a colour is a class on the map container, switched by the
 * page's CSS rules. Popups are built with DOM nodes and textContent, never from HTML strings:
 * names and addresses are user data.
 */
(function () {
  "use strict";

  var ADDRESS = ["vejnavn", "husnr", "postnr", "postnr_by"];

  function node(tag, value, cls) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (value !== undefined && value !== null) e.textContent = value;
    return e;
  }

  function address(p) {
    var street = [p.vejnavn, p.husnr].filter(Boolean).join(" ");
    var town = [p.postnr, p.postnr_by].filter(Boolean).join(" ");
    return [street, town].filter(Boolean).join(", ");
  }

  function day(value) {
    var d = new Date(value);
    return isNaN(d) ? value : d.toLocaleDateString("da-DK");
  }

  function heading(p, lyr) {
    return p[lyr.label] || (lyr.fallback && p[lyr.fallback]) || lyr.title;
  }

  function popup(f, lyr, o) {
    var p = f.properties;
    var box = node("div", null, "ly-popup");
    box.appendChild(node("h3", heading(p, lyr)));
    var dl = node("dl");
    var addressDone = false;
    lyr.fields.forEach(function (name) {
      var label = lyr.labels[name] || name, value = p[name];
      if (name === lyr.label) return;
      if (ADDRESS.indexOf(name) >= 0) {
        if (addressDone) return;
        addressDone = true;
        label = "Adresse";
        value = address(p);
      } else if (name === "beliggenhedskommune" && value !== null && value !== undefined) {
        value = value + " " + (o.kommuner[String(value)] || "");
      } else if (lyr.dates.indexOf(name) >= 0 && value) {
        value = day(value);
      } else if (lyr.numbers.indexOf(name) >= 0 && typeof value === "number") {
        value = value.toLocaleString("da-DK");
      } else if (typeof value === "boolean") {
        value = value ? "Ja" : "Nej";
      }
      if (value === null || value === undefined || value === "") return;
      dl.appendChild(node("dt", label));
      dl.appendChild(node("dd", String(value)));
    });
    box.appendChild(dl);
    var a = node("a", "Alle oplysninger");
    a.href = lyr.itemUrl + encodeURIComponent(f.id) + "?f=html";
    box.appendChild(a);
    return box;
  }

  /* The classes an object is drawn with: its theme, each code it is filtered and coloured
   * by, and whether it is no longer in use. */
  function classes(p, lyr, kind) {
    var cls = ["ly-obj", kind, "ly-t-" + lyr.id];
    lyr.filters.forEach(function (name) {
      if (p[name] !== undefined && p[name] !== null) cls.push("ly-c-" + name + "-" + p[name]);
    });
    if (lyr.status && lyr.inactive.indexOf(p[lyr.status]) >= 0) cls.push("ly-closed");
    return cls.join(" ");
  }

  function title(p, lyr) {
    var t = String(heading(p, lyr));
    if (lyr.figure && typeof p[lyr.figure.field] === "number") {
      t += ", " + p[lyr.figure.field].toLocaleString("da-DK") + " " + lyr.figure.title;
    }
    return t;
  }

  function pointFor(f, lyr) {
    var c = f.geometry.coordinates;
    var icon = L.divIcon({className: classes(f.properties, lyr, "ly-point"),
                          iconSize: [14, 14], html: ""});
    return L.marker([c[1], c[0]], {icon: icon, title: title(f.properties, lyr),
                                   keyboard: true});
  }

  function areaFor(f, lyr) {
    var g = f.geometry;
    var latlngs = L.GeoJSON.coordsToLatLngs(g.coordinates, g.type === "MultiPolygon" ? 2 : 1);
    return L.polygon(latlngs, {className: classes(f.properties, lyr, "ly-area"),
                               color: lyr.colour, weight: 2, fillColor: lyr.colour,
                               fillOpacity: 0.35});
  }

  function clusterIcon(lyr) {
    return function (cluster) {
      var n = cluster.getChildCount();
      var size = n < 10 ? "small" : n < 100 ? "medium" : "large";
      var outer = node("div");
      outer.appendChild(node("span", String(n)));
      return L.divIcon({html: outer, iconSize: L.point(40, 40),
                        className: "marker-cluster marker-cluster-" + size +
                          " ly-cluster ly-t-" + lyr.id});
    };
  }

  function init(map, cfg) {
    var o = cfg.options;
    var container = map.getContainer();
    var form = document.getElementById("ly-map-filters");
    var kommuneSel = document.getElementById("filter-kommune");
    var state = {};

    // Danish controls.
    L.control.zoom({position: "topleft", zoomInTitle: "Zoom ind", zoomOutTitle: "Zoom ud"})
      .addTo(map);
    L.control.scale({imperial: false, position: "bottomleft"}).addTo(map);
    map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    map.on("popupopen", function (e) {
      var b = e.popup.getElement().querySelector(".leaflet-popup-close-button");
      if (b) { b.setAttribute("aria-label", "Luk"); b.title = "Luk"; }
    });

    function syncUrl() {
      if (!(window.history && window.history.replaceState)) return;
      var q = new URLSearchParams(window.location.search);
      o.layers.forEach(function (lyr) {
        var s = state[lyr.id];
        q.delete(o.colourParam);
        q.delete(lyr.id + "." + o.colourParam);
        if (s.colour !== lyr.defaultColour) q.set(lyr.id + "." + o.colourParam, s.colour);
        lyr.filters.forEach(function (name) {
          q.delete(name);
          q.delete(lyr.id + "." + name);
          if (s.filters[name]) q.set(lyr.id + "." + name, s.filters[name]);
        });
      });
      var text = q.toString();
      window.history.replaceState(null, "", window.location.pathname + (text ? "?" + text : ""));
    }

    function apply(id) {
      var s = state[id], lyr = s.lyr;
      var keep = s.items.filter(function (it) {
        return lyr.filters.every(function (name) {
          var want = s.filters[name];
          return !want || String(it.props[name]) === want;
        });
      });
      var layers = keep.map(function (it) { return it.layer; });
      s.group.clearLayers();
      if (s.group.addLayers) s.group.addLayers(layers);
      else layers.forEach(function (l) { s.group.addLayer(l); });
      s.shown = keep;
      var counts = {};
      keep.forEach(function (it) {
        lyr.filters.forEach(function (name) {
          var k = id + "." + name + "." + it.props[name];
          counts[k] = (counts[k] || 0) + 1;
        });
      });
      document.querySelectorAll("[data-count^='" + id + ".']").forEach(function (el) {
        el.textContent = (counts[el.getAttribute("data-count")] || 0).toLocaleString("da-DK");
      });
      var out = document.getElementById("ly-shown-" + id);
      if (out) {
        out.textContent = keep.length.toLocaleString("da-DK");
        out.setAttribute("data-count", String(keep.length));
      }
      container.setAttribute("data-shown-" + id, String(keep.length));
    }

    function colourBy(id, mode) {
      var s = state[id];
      container.classList.remove("ly-colour-" + id + "-" + s.colour);
      s.colour = mode;
      container.classList.add("ly-colour-" + id + "-" + mode);
      document.querySelectorAll("[data-legend='" + id + "']").forEach(function (el) {
        el.hidden = el.getAttribute("data-mode") !== mode;
      });
    }

    o.layers.forEach(function (lyr) {
      var data = JSON.parse(document.getElementById("ly-features-" + lyr.id).textContent);
      var group = cfg.groups[lyr.id];
      if (!lyr.area) group.options.iconCreateFunction = clusterIcon(lyr);
      var items = data.features.filter(function (f) { return f.geometry; }).map(function (f) {
        var layer = lyr.area ? areaFor(f, lyr) : pointFor(f, lyr);
        layer.lyId = f.id;
        layer.lyProps = f.properties;
        layer.lyTheme = lyr.id;
        layer.bindPopup(function () { return popup(f, lyr, o); }, {maxWidth: 320});
        return {layer: layer, props: f.properties};
      });
      var filters = {};
      Object.keys(lyr.initial).forEach(function (k) { filters[k] = String(lyr.initial[k]); });
      state[lyr.id] = {lyr: lyr, group: group, items: items, filters: filters,
                       colour: lyr.colourBy, shown: []};
      colourBy(lyr.id, lyr.colourBy);
      apply(lyr.id);
    });

    document.querySelectorAll("select[data-attr]").forEach(function (sel) {
      sel.addEventListener("change", function () {
        var id = sel.getAttribute("data-theme");
        state[id].filters[sel.getAttribute("data-attr")] = sel.value;
        apply(id);
        syncUrl();
      });
    });
    document.querySelectorAll("select[data-colour]").forEach(function (sel) {
      sel.addEventListener("change", function () {
        colourBy(sel.getAttribute("data-theme"), sel.value);
        syncUrl();
      });
    });
    if (kommuneSel) kommuneSel.addEventListener("change", function () { form.submit(); });
    syncUrl();

    // The choropleth's legend (if the page has one) follows the layer.
    var legend = L.control({position: "bottomright"});
    legend.onAdd = function () {
      var d = L.DomUtil.create("div", "ly-legend ly-choropleth-legend");
      d.innerHTML = cfg.legendHtml;  // built and escaped by the server
      L.DomEvent.disableClickPropagation(d);
      return d;
    };
    if (cfg.choropleth && map.hasLayer(cfg.choropleth)) legend.addTo(map);
    map.on("overlayadd", function (e) { if (e.layer === cfg.choropleth) legend.addTo(map); });
    map.on("overlayremove", function (e) { if (e.layer === cfg.choropleth) legend.remove(); });

    // Without a reachable basemap the page says so and goes on with the themes.
    var note = document.getElementById("ly-basemap-note"), loaded = 0;
    cfg.basemaps.forEach(function (layer) {
      layer.on("tileerror", function () {
        if (!loaded && note) { note.hidden = false; container.classList.add("ly-no-basemap"); }
      });
      layer.on("tileload", function () {
        loaded += 1;
        if (note) { note.hidden = true; container.classList.remove("ly-no-basemap"); }
      });
    });

    container.setAttribute("data-ready", "true");
    var api = {map: map, layers: {}, apply: apply, colourBy: colourBy};
    Object.keys(state).forEach(function (id) {
      api.layers[id] = {group: state[id].group, items: state[id].items.map(function (it) {
        return it.layer; })};
    });
    window.lyMap = api;
  }

  window.LyMap = {init: init};
})();
