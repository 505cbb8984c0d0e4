/* /redoc: ReDoc on Ly's OpenAPI document. A file rather than an inline script, for the
 * Content-Security-Policy. The page gives this script the response's nonce, which ReDoc
 * puts on the style elements it makes (styled-components), so no 'unsafe-inline' is needed.
 * Nothing is loaded from outside Ly: ReDoc's sidebar shows Redocly's logo from
 * cdn.redoc.ly, so an image from another origin is given no source (the policy would
 * refuse it anyway; this way it is not even asked for). */
(function () {
  "use strict";
  var root = document.getElementById("redoc");
  var nonce = document.currentScript ? document.currentScript.nonce : "";

  function outside(value) {
    try {
      return new URL(String(value), document.baseURI).origin !== window.location.origin &&
        !/^(data|blob):/.test(String(value));
    } catch (e) {
      return true;
    }
  }
  var setAttribute = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function (name, value) {
    if (this instanceof HTMLImageElement && String(name).toLowerCase() === "src" &&
        outside(value)) {
      this.hidden = true;
      return undefined;
    }
    return setAttribute.call(this, name, value);
  };
  var src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
  Object.defineProperty(HTMLImageElement.prototype, "src", {
    configurable: true,
    enumerable: src.enumerable,
    get: src.get,
    set: function (value) {
      if (outside(value)) {
        this.hidden = true;
        return;
      }
      src.set.call(this, value);
    }
  });

  Redoc.init(root.dataset.openapiUrl, {
    nonce: nonce || undefined,
    expandResponses: "200,201",
    sortTagsAlphabetically: false
  }, root);
})();
