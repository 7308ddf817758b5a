// tsrevel console: refresh regions marked data-refresh="<url>" every data-every seconds.
// Pages work without it; it never refreshes a region while someone is typing in it.
(function () {
  "use strict";
  function busy(region) {
    var active = document.activeElement;
    if (active && active !== document.body && region.contains(active)) return true;
    return Array.prototype.some.call(region.querySelectorAll("input[type=text], textarea"), function (el) { return el.value !== ""; });
  }
  function start(region) {
    var every = (parseFloat(region.getAttribute("data-every")) || 5) * 1000;
    setInterval(function () {
      if (document.hidden || busy(region)) return;
      fetch(region.getAttribute("data-refresh"), { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (answer) {
          // Signed out or idle: leave the page as it is; the next click shows the sign-in page.
          if (!answer.ok || answer.redirected) return null;
          return answer.text();
        })
        .then(function (html) { if (html !== null && !busy(region)) region.innerHTML = html; })
        .catch(function () { /* the service is restarting: try again next time */ });
    }, every);
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-refresh]"), start);
  });
})();
