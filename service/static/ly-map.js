/* Ly's map page: the shelters in marker clusters, their popups, the filters and the legends.
 *
 * The server builds the Leaflet map with folium and embeds the shelters the viewer may see as
 * GeoJSON (<script type="application/json" id="ly-shelters">). Filtering by type and condition
 * happens here, without the server, so it works offline. Popups are built with DOM nodes and
 * textContent, never from HTML strings: names and addresses are user data.
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

  function popup(f, o) {
    var p = f.properties;
    var box = node("div", null, "ly-popup");
    box.appendChild(node("h3", p.navn || p.beskyt_rum || "Beskyttelsesrum"));
    var dl = node("dl");
    var addressDone = false;
    o.fields.forEach(function (name) {
      var label = o.labels[name] || name, value = p[name];
      if (name === "navn") return;
      if (ADDRESS.indexOf(name) >= 0) {
        if (addressDone) return;
        addressDone = true;
        label = "Adresse";
        value = address(p);
      } else if (name === "beliggenhedskommune" && value !== null && value !== undefined) {
        value = value + " " + (o.kommuner[String(value)] || "");
      } else if (typeof value === "number") {
        value = value.toLocaleString("da-DK");
      }
      if (value === null || value === undefined || value === "") return;
      dl.appendChild(node("dt", label));
      dl.appendChild(node("dd", String(value)));
    });
    box.appendChild(dl);
    var a = node("a", "Alle oplysninger");
    a.href = o.itemUrl + encodeURIComponent(f.id) + "?f=html";
    box.appendChild(a);
    return box;
  }

  function markerFor(f, o) {
    var p = f.properties, c = f.geometry.coordinates;
    var cls = "ly-shelter ly-type-" + p.beskyt_rum_kode;
    if (p.egnethed_kode !== undefined && p.egnethed_kode !== null) {
      cls += " ly-egnethed-" + p.egnethed_kode;
    }
    if (p.funktionsstatus_kode === 5 || p.funktionsstatus_kode === 6) cls += " ly-closed";
    var title = (p.navn || p.beskyt_rum || "Beskyttelsesrum") +
      (p.pladser ? ", " + p.pladser.toLocaleString("da-DK") + " pladser" : "");
    var m = L.marker([c[1], c[0]], {
      icon: L.divIcon({className: cls, iconSize: [14, 14], html: ""}),
      title: title,
      keyboard: true
    });
    m.lyProps = p;
    m.bindPopup(function () { return popup(f, o); }, {maxWidth: 320});
    return m;
  }

  function init(map, cluster, cfg) {
    var o = cfg.options;
    var data = JSON.parse(document.getElementById("ly-shelters").textContent);
    var container = map.getContainer();
    var form = document.getElementById("ly-map-filters");
    var typeSel = document.getElementById("filter-type");
    var egnSel = document.getElementById("filter-egnethed");
    var kommuneSel = document.getElementById("filter-kommune");
    var shown = document.getElementById("ly-shown");

    // Danish controls.
    L.control.zoom({position: "topleft", zoomInTitle: "Zoom ind", zoomOutTitle: "Zoom ud"})
      .addTo(map);
    L.control.scale({imperial: false, position: "bottomleft"}).addTo(map);
    map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    map.on("popupopen", function (e) {
      var b = e.popup.getElement().querySelector(".leaflet-popup-close-button");
      if (b) { b.setAttribute("aria-label", "Luk"); b.title = "Luk"; }
    });

    var markers = data.features.map(function (f) { return markerFor(f, o); });

    function apply() {
      var t = typeSel ? typeSel.value : "", e = egnSel ? egnSel.value : "";
      var keep = markers.filter(function (m) {
        return (!t || String(m.lyProps.beskyt_rum_kode) === t) &&
          (!e || String(m.lyProps.egnethed_kode) === e);
      });
      cluster.clearLayers();
      cluster.addLayers(keep);
      var byType = {}, byEgnethed = {};
      keep.forEach(function (m) {
        byType[m.lyProps.beskyt_rum_kode] = (byType[m.lyProps.beskyt_rum_kode] || 0) + 1;
        byEgnethed[m.lyProps.egnethed_kode] = (byEgnethed[m.lyProps.egnethed_kode] || 0) + 1;
      });
      document.querySelectorAll("[data-count-type]").forEach(function (el) {
        el.textContent = (byType[el.getAttribute("data-count-type")] || 0).toLocaleString("da-DK");
      });
      document.querySelectorAll("[data-count-egnethed]").forEach(function (el) {
        el.textContent =
          (byEgnethed[el.getAttribute("data-count-egnethed")] || 0).toLocaleString("da-DK");
      });
      shown.textContent = keep.length.toLocaleString("da-DK");
      shown.setAttribute("data-count", String(keep.length));
      container.setAttribute("data-shown", String(keep.length));
      if (window.history && window.history.replaceState) {
        var q = new URLSearchParams(window.location.search);
        [["beskyt_rum_kode", t], ["egnethed_kode", e]].forEach(function (kv) {
          if (kv[1]) q.set(kv[0], kv[1]); else q.delete(kv[0]);
        });
        var s = q.toString();
        window.history.replaceState(null, "", window.location.pathname + (s ? "?" + s : ""));
      }
    }

    function colourBy(mode) {
      if (window.history && window.history.replaceState) {
        var q = new URLSearchParams(window.location.search);
        if (mode === "egnethed") q.set("farve", mode); else q.delete("farve");
        var s = q.toString();
        window.history.replaceState(null, "", window.location.pathname + (s ? "?" + s : ""));
      }
      container.classList.toggle("ly-colour-egnethed", mode === "egnethed");
      container.classList.toggle("ly-colour-type", mode !== "egnethed");
      document.querySelectorAll("[data-legend]").forEach(function (el) {
        el.hidden = el.getAttribute("data-legend") !== (mode === "egnethed" ? "egnethed" : "type");
      });
    }

    if (typeSel) typeSel.addEventListener("change", apply);
    if (egnSel) egnSel.addEventListener("change", apply);
    if (kommuneSel) kommuneSel.addEventListener("change", function () { form.submit(); });
    document.querySelectorAll("input[name=farve]").forEach(function (r) {
      r.addEventListener("change", function () { if (r.checked) colourBy(r.value); });
    });
    var checked = document.querySelector("input[name=farve]:checked");
    colourBy(checked ? checked.value : "type");
    apply();

    // The choropleth's legend follows the layer.
    var legend = L.control({position: "bottomright"});
    legend.onAdd = function () {
      var d = L.DomUtil.create("div", "ly-legend ly-choropleth-legend");
      d.innerHTML = cfg.legendHtml;  // built and escaped by the server
      L.DomEvent.disableClickPropagation(d);
      return d;
    };
    if (map.hasLayer(cfg.choropleth)) legend.addTo(map);
    map.on("overlayadd", function (e) { if (e.layer === cfg.choropleth) legend.addTo(map); });
    map.on("overlayremove", function (e) { if (e.layer === cfg.choropleth) legend.remove(); });

    // Without a reachable basemap the page says so and goes on with shelters and choropleth.
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
    window.lyMap = {map: map, cluster: cluster, markers: markers, apply: apply};
  }

  window.LyMap = {init: init};
})();
