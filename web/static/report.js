// The report form's optional "Use my location" button. The form works without it: with
// no JavaScript (or no geolocation) the button never appears and the place is typed.
// Nothing leaves the browser until the form is sent; the server checks the numbers again.
(function () {
  "use strict";

  var form = document.getElementById("report-form");
  var box = document.getElementById("pin");
  if (!form || !box || !("geolocation" in navigator)) {
    return;
  }
  var latitude = form.elements.namedItem("latitude");
  var longitude = form.elements.namedItem("longitude");
  var place = form.elements.namedItem("location");
  var use = document.getElementById("pin-use");
  var clear = document.getElementById("pin-clear");
  var status = document.getElementById("pin-status");

  function show(pinned, message) {
    use.hidden = pinned;
    clear.hidden = !pinned;
    use.disabled = false;
    status.textContent = message || "";
    // A pin is enough to place the report; without one, the place must be typed.
    place.required = !pinned;
  }

  function forget(message) {
    latitude.value = "";
    longitude.value = "";
    show(false, message);
  }

  use.addEventListener("click", function () {
    use.disabled = true;
    status.textContent = box.dataset.busy;
    navigator.geolocation.getCurrentPosition(
      function (position) {
        latitude.value = position.coords.latitude.toFixed(5);
        longitude.value = position.coords.longitude.toFixed(5);
        show(true, box.dataset.done);
      },
      function () {
        forget(box.dataset.failed);
      },
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 }
    );
  });

  clear.addEventListener("click", function () {
    forget("");
  });

  box.hidden = false;
  if (latitude.value && longitude.value) {
    show(true, box.dataset.done); // the form came back (an error) with a pin already set
  }
})();
