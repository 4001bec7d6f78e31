// Discord payloads checked by an independent validator, npm @discordjs/builders (each
// component, modal, embed and command rebuilt from its JSON and serialised, which applies
// Discord's documented limits), plus the rules it does not check: at most 5 top-level
// components in a modal and 5 buttons in a row, custom_ids unique in a message, content at
// most 2,000 characters, labels and descriptions within their lengths.
//
// usage: node validate.js DIR   (NODE_PATH reaching @discordjs/builders)
//   DIR/*.modal.json     a modal (an interaction response's `data` or the response itself)
//   DIR/*.message.json   a message body or an interaction response carrying one
//   DIR/*.commands.json  the application commands, as registered
const fs = require("fs");
const path = require("path");
const { ModalBuilder, ActionRowBuilder, EmbedBuilder, SlashCommandBuilder } = require("@discordjs/builders");

const problems = [];
const fail = (file, message) => problems.push(`${file}: ${message}`);
const chars = (s) => [...(s ?? "")].length;

function ownChecks(file, topLevel, isModal) {
  const ids = new Set();
  if (isModal && topLevel.length > 5) fail(file, `${topLevel.length} top-level components (at most 5)`);
  if (!isModal && topLevel.length > 5) fail(file, `${topLevel.length} rows (at most 5)`);
  for (const c of topLevel) {
    const inner = c.type === 18 ? [c.component] : c.components ?? [];
    if (c.type === 1 && inner.length > 5) fail(file, `${inner.length} components in a row (at most 5)`);
    if (c.type === 18) {
      if (chars(c.label) > 45) fail(file, `label "${c.label}" over 45 characters`);
      if (chars(c.description) > 100) fail(file, `description over 100 characters`);
    }
    for (const i of inner) {
      if (i.custom_id === undefined) continue;
      if (chars(i.custom_id) > 100) fail(file, `custom_id over 100 characters`);
      if (ids.has(i.custom_id)) fail(file, `custom_id "${i.custom_id}" used twice`);
      ids.add(i.custom_id);
      if ((i.options ?? []).length > 25) fail(file, `${i.options.length} options (at most 25)`);
    }
  }
}

function modal(file, v) {
  const data = v.type === 9 ? v.data : v;
  ownChecks(file, data.components ?? [], true);
  new ModalBuilder(data).toJSON();
}

function message(file, v) {
  const data = v.type !== undefined && v.data ? v.data : v;
  if (chars(data.content) > 2000) fail(file, `content of ${chars(data.content)} characters (at most 2000)`);
  ownChecks(file, data.components ?? [], false);
  for (const row of data.components ?? []) new ActionRowBuilder(row).toJSON();
  for (const e of data.embeds ?? []) {
    const b = new EmbedBuilder();
    if (e.title) b.setTitle(e.title);
    if (e.description) b.setDescription(e.description);
    if (e.fields) b.addFields(...e.fields);
    if (e.footer) b.setFooter(e.footer);
    b.toJSON();
  }
  for (const c of data.choices ?? []) {
    if (chars(c.name) > 100 || chars(c.value) > 100) fail(file, `an autocomplete choice over 100 characters`);
  }
  if ((data.choices ?? []).length > 25) fail(file, `${data.choices.length} autocomplete choices (at most 25)`);
}

function option(builderOption, o) {
  builderOption.setName(o.name).setDescription(o.description);
  if (o.required !== undefined && builderOption.setRequired) builderOption.setRequired(o.required);
  if (o.autocomplete && builderOption.setAutocomplete) builderOption.setAutocomplete(true);
  for (const c of o.choices ?? []) builderOption.addChoices(c);
  return builderOption;
}

function commands(file, list) {
  for (const c of list) {
    const b = new SlashCommandBuilder().setName(c.name).setDescription(c.description);
    for (const o of c.options ?? []) {
      if (o.type === 1) b.addSubcommand((s) => { s.setName(o.name).setDescription(o.description); for (const so of o.options ?? []) s.addStringOption((x) => option(x, so)); return s; });
      else if (o.type === 3) b.addStringOption((x) => option(x, o));
      else fail(file, `option type ${o.type} is not checked here`);
    }
    b.toJSON();
  }
}

const dir = process.argv[2];
let n = 0;
for (const f of fs.readdirSync(dir).sort()) {
  const v = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
  try {
    if (f.endsWith(".modal.json")) modal(f, v);
    else if (f.endsWith(".message.json")) message(f, v);
    else if (f.endsWith(".commands.json")) commands(f, v);
    else continue;
    n += 1;
  } catch (e) {
    fail(f, (e.message || String(e)).split("\n").slice(0, 6).join(" "));
  }
}
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(`ok: ${n} payloads`);
