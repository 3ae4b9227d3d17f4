// The site opened from disk (file://, e.g. a built site/ folder without a server): a link to a
// page's folder ("training/", "../", ".") would show the folder's file listing, since no
// server turns it into the folder's index.html. Point such links at index.html instead.
// Served over http(s), the site is left as it is.
(function () {
  "use strict";

  if (window.location.protocol !== "file:") return;

  var EXTERNAL = /^([a-z][a-z0-9+.-]*:|\/\/|#)/i; // http:, mailto:, //host, #anchor

  function toIndexFile(href) {
    if (!href || EXTERNAL.test(href)) return href;
    var split = href.match(/^([^?#]*)(.*)$/);
    var path = split[1];
    var rest = split[2];
    if (path === "" ) return href;
    if (path === "." || path === ".." || /\/\.\.?$/.test(path)) path += "/";
    return path.slice(-1) === "/" ? path + "index.html" + rest : href;
  }

  function apply() {
    document.querySelectorAll("a[href]").forEach(function (link) {
      var href = link.getAttribute("href");
      var fixed = toIndexFile(href);
      if (fixed !== href) link.setAttribute("href", fixed);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", apply);
  } else {
    apply();
  }
})();
