/* The ConsentBridge console's only script: plain JavaScript, no build step.
   1. <time datetime> elements are shown in the browser's local time (UTC stays on hover).
   2. The mapping builder: rows that edit config.properties of the document in the textarea,
      columns and Journeys purposes from live Dataverse metadata, Didomi paths checked as typed. */
"use strict";

function localTimes(root) {
  root.querySelectorAll("time[datetime]").forEach(function (el) {
    var when = new Date(el.getAttribute("datetime"));
    if (isNaN(when.getTime())) return;
    el.title = el.title || el.textContent;
    el.textContent = when.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  });
}

function el(tag, attrs, children) {
  var node = document.createElement(tag);
  Object.keys(attrs || {}).forEach(function (key) {
    if (key === "text") node.textContent = attrs[key];
    else node.setAttribute(key, attrs[key]);
  });
  (children || []).forEach(function (child) { node.appendChild(child); });
  return node;
}

function field(label, input, extra, wide) {
  var wrap = el("label", { class: wide ? "field wide" : "field" }, [el("span", { text: label }), input]);
  (extra || []).forEach(function (node) { wrap.appendChild(node); });
  return wrap;
}

// Row fields carry data-field, not name: the form posts only the document.
function select(name, options, value) {
  var node = el("select", { "data-field": name });
  options.forEach(function (option) {
    var item = el("option", { value: option[0], text: option[1] });
    if (String(option[0]) === String(value)) item.selected = true;
    node.appendChild(item);
  });
  return node;
}

function Builder(form) {
  this.form = form;
  this.textarea = form.querySelector("#document");
  this.rows = form.querySelector("#rows");
  this.status = form.querySelector("#choices-status");
  this.columns = {};
  this.purposes = [];
  this.checks = {};
  this.timer = null;
}

Builder.prototype.documentJson = function () {
  try {
    var doc = JSON.parse(this.textarea.value);
    return doc && typeof doc === "object" && !Array.isArray(doc) ? doc : null;
  } catch (e) {
    return null;
  }
};

Builder.prototype.start = function () {
  var self = this;
  this.form.querySelector("#builder").hidden = false;
  this.form.querySelector("#add-row").addEventListener("click", function () {
    self.addRow({ id: "", value: "" });
    self.sync();
  });
  this.form.querySelector("#load-choices").addEventListener("click", function () {
    self.loadChoices();
  });
  this.textarea.addEventListener("change", function () { self.fromDocument(); });
  this.fromDocument();
  if (this.form.querySelector("input[name=integration_id]").value) this.loadChoices();
};

Builder.prototype.fromDocument = function () {
  var doc = this.documentJson();
  this.rows.textContent = "";
  if (!doc) {
    this.rows.appendChild(el("p", { class: "hint", text:
      "The builder edits a JSON document; this one is YAML or does not parse yet. Edit it below." }));
    return;
  }
  var props = (doc.config && Array.isArray(doc.config.properties)) ? doc.config.properties : [];
  var self = this;
  props.forEach(function (prop) { self.addRow(prop || {}); });
  this.placeServerErrors();
};

Builder.prototype.addRow = function (prop) {
  var self = this;
  var index = this.rows.children.length;
  var row = el("fieldset", { class: "row", "data-index": String(index) });
  row.appendChild(el("legend", { text: "Row " + (index + 1) }));
  var target = select("target", [["contact", "Contact column"], ["contactpointconsent", "Journeys consent"]],
    prop.target || "contact");
  var column = el("input", { "data-field": "id", list: "columns-list", value: prop.id || "",
    placeholder: "logical name, e.g. donotbulkemail", autocomplete: "off" });
  var columnType = el("small", { class: "type" });
  var purpose = el("select", { "data-field": "purpose" });
  var topic = el("select", { "data-field": "topic" });
  var channel = select("channel", [["email", "email"], ["sms", "sms"], ["voice", "voice"], ["custom", "custom"]],
    prop.channel || "email");
  var path = el("input", { "data-field": "value", list: "paths-list", value: prop.value || "",
    placeholder: "consents_purposes_<purpose>_enabled", autocomplete: "off", spellcheck: "false" });
  var pathNote = el("small", { class: "note", "aria-live": "polite" });
  var transformKind = typeof prop.transform === "object" && prop.transform !== null ? "map"
    : (prop.transform === "not" ? "not" : "none");
  var transform = select("transform", [["none", "none"], ["not", "not (invert)"], ["map", "value map"]], transformKind);
  var mapText = el("input", { "data-field": "map", placeholder: "true=1, false=2",
    value: transformKind === "map" ? Object.keys(prop.transform).map(function (k) {
      return k + "=" + JSON.stringify(prop.transform[k]); }).join(", ") : "" });
  var regulations = el("input", { "data-field": "regulations", placeholder: "default (config.regulations)",
    value: Array.isArray(prop.regulations) ? prop.regulations.join(", ") : "" });
  var remove = el("button", { type: "button", class: "link remove", text: "Remove row" });

  var contactPart = field("Dataverse column", column, [columnType]);
  var consentPart = el("div", { class: "consent" }, [
    field("Purpose", purpose), field("Topic", topic), field("Channel", channel)]);
  row.appendChild(field("Target", target));
  row.appendChild(contactPart);
  row.appendChild(consentPart);
  row.appendChild(field("Didomi path", path, [pathNote], true));
  row.appendChild(field("Transform", transform, [mapText]));
  row.appendChild(field("Regulations", regulations));
  row.appendChild(remove);
  row._prop = prop;
  this.rows.appendChild(row);

  function shape() {
    var journeys = target.value === "contactpointconsent";
    contactPart.hidden = journeys;
    consentPart.hidden = !journeys;
    mapText.hidden = transform.value !== "map";
    var info = self.columns[column.value];
    columnType.textContent = info ? info.attribute_type + (info.writable ? "" : " — " + info.problem) : "";
    if (journeys) self.fillPurposes(purpose, topic, prop.id, prop.topic);
  }
  [target, column, purpose, topic, channel, transform, mapText, regulations].forEach(function (input) {
    input.addEventListener("input", function () { shape(); self.sync(); });
    input.addEventListener("change", function () { shape(); self.sync(); });
  });
  path.addEventListener("input", function () { self.sync(); self.checkLater(path, pathNote); });
  remove.addEventListener("click", function () { row.remove(); self.renumber(); self.sync(); });
  shape();
  if (path.value) this.checkLater(path, pathNote);
};

Builder.prototype.fillPurposes = function (purpose, topic, purposeValue, topicValue) {
  var chosen = purpose.value || purposeValue || "";
  purpose.textContent = "";
  purpose.appendChild(el("option", { value: "", text: this.purposes.length ? "choose a purpose" : "load from Dataverse first" }));
  var found = null;
  this.purposes.forEach(function (p) {
    var option = el("option", { value: p.purpose_id, text: p.name });
    if (p.purpose_id === chosen || p.name === chosen) { option.selected = true; found = p; }
    purpose.appendChild(option);
  });
  if (!found && chosen) purpose.appendChild(el("option", { value: chosen, text: chosen, selected: "selected" }));
  var chosenTopic = topic.value || topicValue || "";
  topic.textContent = "";
  topic.appendChild(el("option", { value: "", text: "no topic (the whole purpose)" }));
  (found ? found.topics : []).forEach(function (t) {
    var option = el("option", { value: t.topic_id, text: t.name });
    if (t.topic_id === chosenTopic || t.name === chosenTopic) option.selected = true;
    topic.appendChild(option);
  });
};

Builder.prototype.renumber = function () {
  Array.prototype.forEach.call(this.rows.children, function (row, index) {
    row.setAttribute("data-index", String(index));
    var legend = row.querySelector("legend");
    if (legend) legend.textContent = "Row " + (index + 1);
  });
};

function parseMap(text) {
  var map = {};
  text.split(",").forEach(function (pair) {
    var parts = pair.split("=");
    if (parts.length !== 2 || !parts[0].trim()) return;
    var raw = parts[1].trim();
    var value;
    try { value = JSON.parse(raw); } catch (e) { value = raw; }
    map[parts[0].trim()] = value;
  });
  return map;
}

Builder.prototype.rowProperty = function (row) {
  var get = function (name) { return row.querySelector("[data-field=" + name + "]").value.trim(); };
  var prop = {};
  var journeys = get("target") === "contactpointconsent";
  if (journeys) {
    prop.id = get("purpose");
    prop.target = "contactpointconsent";
    if (get("topic")) prop.topic = get("topic");
    if (get("channel") !== "email") prop.channel = get("channel");
  } else {
    prop.id = get("id");
  }
  prop.value = get("value");
  if (get("transform") === "not") prop.transform = "not";
  if (get("transform") === "map") prop.transform = parseMap(get("map"));
  var regulations = get("regulations").split(",").map(function (r) { return r.trim(); })
    .filter(function (r) { return r; });
  if (regulations.length) prop.regulations = regulations;
  return prop;
};

Builder.prototype.sync = function () {
  var doc = this.documentJson();
  if (!doc) return;
  doc.config = doc.config || {};
  var self = this;
  doc.config.properties = Array.prototype.map.call(this.rows.querySelectorAll("fieldset.row"),
    function (row) { return self.rowProperty(row); });
  this.textarea.value = JSON.stringify(doc, null, 2);
};

Builder.prototype.checkLater = function (input, note) {
  var self = this;
  clearTimeout(input._timer);
  input._timer = setTimeout(function () { self.check(input, note); }, 250);
};

Builder.prototype.check = function (input, note) {
  var value = input.value;
  if (!value) { note.textContent = ""; input.removeAttribute("aria-invalid"); return; }
  fetch("/console/paths/check?value=" + encodeURIComponent(value), { credentials: "same-origin" })
    .then(function (r) { return r.json(); })
    .then(function (verdict) {
      if (input.value !== value) return;
      if (verdict.ok) {
        input.removeAttribute("aria-invalid");
        note.className = "note ok-text";
        note.textContent = "reads " + verdict.readings[0] + " (" + verdict.value_kinds.join(", ") + ")";
      } else {
        input.setAttribute("aria-invalid", "true");
        note.className = "note error-text";
        note.textContent = verdict.error;
      }
    })
    .catch(function () { note.textContent = ""; });
};

Builder.prototype.loadChoices = function () {
  var self = this;
  var body = new URLSearchParams();
  ["csrf", "sealed", "document"].forEach(function (name) {
    body.append(name, self.form.querySelector("[name=" + name + "]").value);
  });
  this.status.className = "";
  this.status.textContent = "Loading…";
  fetch("/console/draft/choices", { method: "POST", body: body, credentials: "same-origin" })
    .then(function (r) {
      return r.json().catch(function () { return { errors: [{ path: "", message: "The console answered " + r.status + "; reload the page." }] }; });
    })
    .then(function (answer) {
      if (answer.errors || answer.detail) {
        var problems = answer.errors || [{ path: "", message: String(answer.detail) }];
        self.status.className = "error-text";
        self.status.textContent = problems.map(function (p) { return (p.path ? p.path + ": " : "") + p.message; }).join(" ");
        return;
      }
      self.useChoices(answer);
    })
    .catch(function () {
      self.status.className = "error-text";
      self.status.textContent = "Dataverse could not be reached from the console; try again.";
    });
};

Builder.prototype.useChoices = function (answer) {
  var self = this;
  var columns = this.form.querySelector("#columns-list");
  var paths = this.form.querySelector("#paths-list");
  columns.textContent = "";
  paths.textContent = "";
  this.columns = {};
  answer.columns.forEach(function (c) {
    self.columns[c.logical_name] = c;
    if (c.writable) columns.appendChild(el("option", { value: c.logical_name, label: c.attribute_type }));
  });
  answer.paths.forEach(function (p) {
    paths.appendChild(el("option", { value: p.path, label: p.describes }));
  });
  this.purposes = answer.purposes;
  this.status.className = "ok-text";
  this.status.textContent = answer.columns.length + " columns, " + answer.purposes.length +
    " Journeys purposes and " + answer.paths.length + " Didomi paths loaded.";
  this.rows.querySelectorAll("fieldset.row").forEach(function (row) {
    row.querySelectorAll("select, input").forEach(function (input) {
      input.dispatchEvent(new Event("change"));
    });
  });
};

Builder.prototype.placeServerErrors = function () {
  var self = this;
  document.querySelectorAll("#server-errors li[data-path]").forEach(function (item) {
    var match = /^config\.properties\[(\d+)\]\.?(\w*)/.exec(item.getAttribute("data-path"));
    if (!match) return;
    var row = self.rows.children[Number(match[1])];
    if (!row) return;
    var name = match[2] === "topic" || match[2] === "channel" || match[2] === "transform" ||
      match[2] === "regulations" || match[2] === "value" ? match[2] : "id";
    var input = row.querySelector("[data-field=" + name + "]");
    if (!input) return;
    input.setAttribute("aria-invalid", "true");
    input.parentNode.appendChild(el("small", { class: "note error-text", text: item.textContent }));
  });
};

document.addEventListener("DOMContentLoaded", function () {
  localTimes(document);
  var form = document.getElementById("editor");
  if (form) new Builder(form).start();
});
