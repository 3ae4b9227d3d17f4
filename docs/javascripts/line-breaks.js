// Where long names and inline code may break a line, and where they may not.
//
// - Names in the table of contents and in the API headings (set_grad_checkpointing,
//   vitlib.training.fit) may break after "_" or ".", between the words of the name, never
//   inside a word: a <wbr> goes after each "_" and "." (extra.css turns off breaking anywhere).
// - Inline code breaks only between its words: each word is kept whole, so that a flag such as
//   --output-dir never splits at its hyphens. A word too long for any line is left as it is.
//
// Only the layout changes: the text, and so what is copied or searched, stays the same.
(function () {
  "use strict";

  var NAME_BREAK = /([._])/;
  var LONGEST_KEPT_WORD = 40; // characters; a longer word may still break, not overflow

  function textNodes(root) {
    var nodes = [];
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) nodes.push(walker.currentNode);
    return nodes;
  }

  function breakNamesAfterSeparators(element) {
    textNodes(element).forEach(function (node) {
      var parts = node.nodeValue.split(NAME_BREAK);
      if (parts.length < 2) return;
      var fragment = document.createDocumentFragment();
      parts.forEach(function (part) {
        if (!part) return;
        fragment.appendChild(document.createTextNode(part));
        if (NAME_BREAK.test(part)) fragment.appendChild(document.createElement("wbr"));
      });
      node.parentNode.replaceChild(fragment, node);
    });
  }

  function keepCodeWordsWhole(code) {
    textNodes(code).forEach(function (node) {
      var parts = node.nodeValue.split(/(\s+)/);
      if (!parts.some(function (part) { return /\S/.test(part); })) return;
      var fragment = document.createDocumentFragment();
      parts.forEach(function (part) {
        if (!part) return;
        if (/\s/.test(part) || part.length > LONGEST_KEPT_WORD) {
          fragment.appendChild(document.createTextNode(part));
          return;
        }
        var word = document.createElement("span");
        word.className = "vitlib-nowrap";
        word.textContent = part;
        fragment.appendChild(word);
      });
      node.parentNode.replaceChild(fragment, node);
    });
  }

  function apply() {
    document
      .querySelectorAll(".md-nav--secondary .md-ellipsis, .md-typeset .doc-heading")
      .forEach(breakNamesAfterSeparators);
    document.querySelectorAll(".md-typeset code").forEach(function (code) {
      if (!code.closest("pre")) keepCodeWordsWhole(code);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", apply);
  } else {
    apply();
  }
})();
