/*
 * trace(text): the tutorial pages' logger. Writes one time-stamped line to the console and,
 * once the page has it, to the element with id "outDiv". Written for sfu-lite (the tutorial's
 * own copy was not published); same contract: a global function taking one string.
 */
(function () {
	"use strict";

	function stamp() {
		var d = new Date();
		function pad(n, w) { n = String(n); while (n.length < w) { n = "0" + n; } return n; }
		return pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2) +
			"." + pad(d.getMilliseconds(), 3);
	}

	window.trace = function (text) {
		var line = stamp() + " " + text;
		if (window.console && console.log) {
			console.log(line);
		}
		var out = document.getElementById("outDiv");
		if (out) {
			var p = document.createElement("div");
			p.className = "trace-line";
			// Text, never HTML: messages come from other people.
			p.textContent = line;
			out.appendChild(p);
		}
	};
})();
