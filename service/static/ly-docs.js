/* /docs: Swagger UI on Ly's OpenAPI document (the settings FastAPI's own docs page uses).
 * A file rather than an inline script, for the Content-Security-Policy; no validator badge
 * (it would load an image from outside Ly). */
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
