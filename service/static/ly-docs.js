/* /docs: Swagger UI on Ly's OpenAPI document (the settings FastAPI's own docs page uses).
 * A file rather than an inline script, for the Content-Security-Policy. Nothing is loaded
 * from outside Ly: no validator badge (`validatorUrl: null`; it would be an image from
 * validator.swagger.io for a document not on localhost; BaseLayout shows none either), no
 * fonts (the CSS names none to fetch). tests/test_docs_browser.py checks it offline. */
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset]
  });
})();
