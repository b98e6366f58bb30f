// A small reader of Helm templates for tests, with no helm binary. Two modes:
// - strip: every {{ … }} action is set aside. Control actions ({{ if }}, {{ end }}, {{ $x := … }},
//   comments) become nothing; a value action becomes a unique placeholder scalar (`__tpl_7__`), and an
//   action piped to `nindent N` / `indent N` (an include of labels, a toYaml) becomes a placeholder
//   mapping entry at that indentation, so that the YAML around it stays what Helm would produce.
//   Both branches of every if are kept and every range body appears once.
// - render: the same, but the simple actions are evaluated for real: `.Values.a.b`, `.Release.*`,
//   `.Chart.*`, `include "define" .` (defines read from _helpers.tpl; some may be given as fixed
//   strings), printf %s, variables bound to those, and the functions quote, default, int, trim,
//   toYaml, toJson (keys sorted, as Helm's), nindent, indent, not, and, or, eq. `if`/`with`/`range` over such values are decided or iterated; anything else stays a
//   placeholder (and both branches of an undecidable `if` are kept).
// Trim markers ({{- and -}}) behave as in Go templates. This is not Helm: a test that uses it must
// compare only what the simple subset renders, and treat placeholders as unknown.

import { stringify } from 'yaml';

const ACTION = /\{\{(-\s)?([\s\S]*?)(\s-)?\}\}/g;

interface Action { body: string; trimLeft: boolean; trimRight: boolean }
type Token = { text: string } | { action: Action };
type Node =
  | { type: 'text'; text: string }
  | { type: 'value'; action: Action }
  | { type: 'if'; cond: string; then: Node[]; else: Node[] }
  | { type: 'range'; vars: string[]; expr: string; body: Node[] }
  | { type: 'with'; expr: string; body: Node[] };

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let last = 0;
  for (const m of src.matchAll(ACTION)) {
    tokens.push({ text: src.slice(last, m.index) });
    tokens.push({ action: { body: m[2]!.trim(), trimLeft: m[1] !== undefined, trimRight: m[3] !== undefined } });
    last = m.index + m[0].length;
  }
  tokens.push({ text: src.slice(last) });
  // Apply trim markers to the neighbouring text now, as Go's lexer does.
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (!('action' in t)) continue;
    const before = tokens[i - 1];
    const after = tokens[i + 1];
    if (t.action.trimLeft && before && 'text' in before) before.text = before.text.replace(/\s+$/, '');
    if (t.action.trimRight && after && 'text' in after) after.text = after.text.replace(/^\s+/, '');
  }
  return tokens;
}

const OPENERS = /^(if|range|with|define|block)\b/;

/** Parse tokens into nodes up to a matching {{ end }} / {{ else }}; returns nodes and the stop keyword. */
function parse(tokens: Token[], pos: { i: number }, defines: Map<string, Node[]>): { nodes: Node[]; stop: string | undefined } {
  const nodes: Node[] = [];
  while (pos.i < tokens.length) {
    const t = tokens[pos.i++]!;
    if ('text' in t) {
      if (t.text) nodes.push({ type: 'text', text: t.text });
      continue;
    }
    const body = t.action.body;
    if (body.startsWith('/*')) continue;
    if (body === 'end') return { nodes, stop: 'end' };
    if (body === 'else' || body.startsWith('else ')) return { nodes, stop: body };
    const opener = OPENERS.exec(body);
    if (opener) {
      const rest = body.slice(opener[0].length).trim();
      if (opener[1] === 'if') nodes.push(parseIf(rest, tokens, pos, defines));
      else {
        const inner = parse(tokens, pos, defines);
        let elseNodes: Node[] = [];
        if (inner.stop !== 'end') elseNodes = parse(tokens, pos, defines).nodes; // range/with … else … end
        if (opener[1] === 'define') defines.set(JSON.parse(rest) as string, inner.nodes);
        else if (opener[1] === 'range') {
          const m = /^((?:\$\w+\s*,\s*)?\$\w+)\s*:=\s*([\s\S]*)$/.exec(rest);
          nodes.push({ type: 'range', vars: m ? m[1]!.split(',').map((v) => v.trim()) : [], expr: m ? m[2]! : rest, body: inner.nodes });
          if (elseNodes.length) nodes.push(...elseNodes);
        } else if (opener[1] === 'with') nodes.push({ type: 'with', expr: rest, body: inner.nodes });
        else nodes.push(...inner.nodes);
      }
      continue;
    }
    nodes.push({ type: 'value', action: t.action });
  }
  return { nodes, stop: undefined };
}

function parseIf(cond: string, tokens: Token[], pos: { i: number }, defines: Map<string, Node[]>): Node {
  const then = parse(tokens, pos, defines);
  let elseNodes: Node[] = [];
  if (then.stop?.startsWith('else if ')) elseNodes = [parseIf(then.stop.slice('else if '.length), tokens, pos, defines)];
  else if (then.stop === 'else') elseNodes = parse(tokens, pos, defines).nodes;
  return { type: 'if', cond, then: then.nodes, else: elseNodes };
}

export interface RenderContext {
  values: Record<string, unknown>;
  release: { Name: string; Namespace: string; Service: string };
  chart: { Name: string; Version: string; AppVersion: string };
  /** Defines rendered as fixed strings instead of from their source (e.g. a fullname with logic). */
  fixedDefines?: Record<string, string>;
}

const UNKNOWN = Symbol('unknown');
type Value = unknown;

class Renderer {
  #n = 0;
  readonly defines = new Map<string, Node[]>();
  readonly ctx: RenderContext | undefined;
  constructor(ctx: RenderContext | undefined) { this.ctx = ctx; }

  placeholder(action: Action): string {
    const id = `__tpl_${++this.#n}__`;
    const indent = /\|\s*(n?)indent\s+(\d+)\s*$/.exec(action.body);
    if (indent) return `${indent[1] ? '\n' : ''}${' '.repeat(Number(indent[2]))}${id}: __tpl__`;
    return id;
  }

  render(nodes: Node[], dot: Value, vars: Map<string, Value>): string {
    let out = '';
    for (const node of nodes) {
      switch (node.type) {
        case 'text': out += node.text; break;
        case 'value': {
          const body = node.action.body;
          const assign = /^(\$\w+)\s*:?=\s*([\s\S]*)$/.exec(body);
          if (assign) {
            const v = this.ctx ? this.evaluate(assign[2]!, dot, vars) : UNKNOWN;
            vars.set(assign[1]!, v);
            break;
          }
          const v = this.ctx ? this.evaluate(body, dot, vars) : UNKNOWN;
          out += v === UNKNOWN || (typeof v === 'object' && v !== null) ? this.placeholder(node.action) : String(v ?? '');
          break;
        }
        case 'if': {
          const c = this.ctx ? this.evaluate(node.cond, dot, vars) : UNKNOWN;
          if (c === UNKNOWN) out += this.render(node.then, dot, vars) + this.render(node.else, dot, vars);
          else out += this.render(truthy(c) ? node.then : node.else, dot, vars);
          break;
        }
        case 'with': {
          const c = this.ctx ? this.evaluate(node.expr, dot, vars) : UNKNOWN;
          if (c === UNKNOWN) out += this.render(node.body, UNKNOWN, vars);
          else if (truthy(c)) out += this.render(node.body, c, vars);
          break;
        }
        case 'range': {
          const c = this.ctx ? this.evaluate(node.expr, dot, vars) : UNKNOWN;
          if (c === UNKNOWN || c === null || typeof c !== 'object') {
            const inner = new Map(vars);
            for (const v of node.vars) inner.set(v, UNKNOWN);
            out += this.render(node.body, UNKNOWN, inner);
            break;
          }
          const entries: [unknown, unknown][] = Array.isArray(c) ? c.map((v, i) => [i, v]) : Object.entries(c).sort(([a], [b]) => a.localeCompare(b));
          for (const [k, v] of entries) {
            const inner = new Map(vars);
            if (node.vars.length === 1) inner.set(node.vars[0]!, v);
            if (node.vars.length === 2) { inner.set(node.vars[0]!, k); inner.set(node.vars[1]!, v); }
            out += this.render(node.body, v, inner);
          }
          break;
        }
      }
    }
    return out;
  }

  root(): Value {
    return { Values: this.ctx!.values, Release: this.ctx!.release, Chart: this.ctx!.chart };
  }

  /** Evaluate a pipeline of the supported subset, or UNKNOWN. */
  evaluate(pipeline: string, dot: Value, vars: Map<string, Value>): Value {
    const commands = splitPipes(pipeline);
    let value = this.command(commands[0]!, dot, vars, undefined);
    for (const cmd of commands.slice(1)) {
      if (value === UNKNOWN) return UNKNOWN;
      value = this.command(cmd, dot, vars, value);
    }
    return value;
  }

  command(cmd: string, dot: Value, vars: Map<string, Value>, piped: Value | undefined): Value {
    const words = splitWords(cmd);
    const [fn, ...args] = words;
    if (fn === undefined) return UNKNOWN;
    const arg = (w: string) => this.operand(w, dot, vars);
    const all = piped === undefined ? args.map(arg) : [...args.map(arg), piped];
    if (fn.startsWith('(')) return words.length === 1 ? this.evaluate(fn.slice(1, -1), dot, vars) : UNKNOWN;
    if (args.length === 0 && piped === undefined) return arg(fn);
    if (all.some((a) => a === UNKNOWN) && fn !== 'default' && fn !== 'or') return UNKNOWN;
    switch (fn) {
      case 'include': {
        const name = all[0] as string;
        const fixed = this.ctx!.fixedDefines?.[name];
        if (fixed !== undefined) return fixed;
        const def = this.defines.get(name);
        if (!def) return UNKNOWN;
        const out = this.render(def, all[1], new Map());
        return out.includes('__tpl_') ? UNKNOWN : out;
      }
      case 'toYaml': return stringify(all[0], { sortMapEntries: true }).replace(/\n$/, '');
      case 'toJson': return JSON.stringify(sortKeys(all[0]));
      case 'quote': return JSON.stringify(String(all[0] ?? ''));
      case 'int': return Number.isFinite(Number(all[0])) ? Math.trunc(Number(all[0])) : UNKNOWN;
      case 'trim': return String(all[0]).trim();
      case 'nindent': case 'indent': {
        const pad = ' '.repeat(Number(all[0]));
        const text = String(all[1]).split('\n').map((l) => pad + l).join('\n');
        return fn === 'nindent' ? `\n${text}` : text;
      }
      case 'default': {
        const [fallback, given] = all;
        if (given === UNKNOWN) return UNKNOWN;
        return truthy(given) ? given : fallback;
      }
      case 'not': return all[0] === UNKNOWN ? UNKNOWN : !truthy(all[0]);
      case 'or': {
        for (const a of all) { if (a === UNKNOWN) return UNKNOWN; if (truthy(a)) return a; }
        return all[all.length - 1];
      }
      case 'and': {
        for (const a of all) if (!truthy(a)) return a;
        return all[all.length - 1];
      }
      case 'eq': return all[0] === all[1];
      case 'printf': {
        let i = 1;
        return String(all[0]).replace(/%s/g, () => String(all[i++]));
      }
      default: return UNKNOWN;
    }
  }

  operand(word: string, dot: Value, vars: Map<string, Value>): Value {
    if (word.startsWith('"')) return JSON.parse(word) as string;
    if (/^-?\d+$/.test(word)) return Number(word);
    if (word === 'true' || word === 'false') return word === 'true';
    if (word.startsWith('(')) return this.evaluate(word.slice(1, -1), dot, vars);
    if (word === '.') return dot;
    if (word === '$') return this.root();
    let base: Value;
    let path: string;
    if (word.startsWith('$.')) { base = this.root(); path = word.slice(2); }
    else if (word.startsWith('$')) {
      const m = /^(\$\w+)(.*)$/.exec(word)!;
      if (!vars.has(m[1]!)) return UNKNOWN;
      base = vars.get(m[1]!);
      path = m[2]!.replace(/^\./, '');
    } else if (word.startsWith('.')) { base = dot; path = word.slice(1); }
    else return UNKNOWN;
    if (base === UNKNOWN) return UNKNOWN;
    for (const key of path ? path.split('.') : []) {
      if (base === null || base === undefined) return undefined;
      if (typeof base !== 'object') return UNKNOWN;
      base = (base as Record<string, unknown>)[key];
    }
    return base;
  }
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]));
  return v;
}

function truthy(v: Value): boolean {
  if (Array.isArray(v)) return v.length > 0;
  if (v && typeof v === 'object') return Object.keys(v).length > 0;
  return Boolean(v);
}

function splitPipes(s: string): string[] {
  const out: string[] = [];
  let depth = 0, quote = false, cur = '';
  for (const ch of s) {
    if (ch === '"' && !cur.endsWith('\\')) quote = !quote;
    if (!quote && ch === '(') depth++;
    if (!quote && ch === ')') depth--;
    if (ch === '|' && !quote && depth === 0) { out.push(cur.trim()); cur = ''; continue; }
    cur += ch;
  }
  out.push(cur.trim());
  return out;
}

function splitWords(s: string): string[] {
  const out: string[] = [];
  let depth = 0, quote = false, cur = '';
  for (const ch of s) {
    if (ch === '"' && !cur.endsWith('\\')) quote = !quote;
    if (!quote && ch === '(') depth++;
    if (!quote && ch === ')') depth--;
    if (/\s/.test(ch) && !quote && depth === 0) { if (cur) out.push(cur); cur = ''; continue; }
    cur += ch;
  }
  if (cur) out.push(cur);
  return out;
}

export class Chart {
  readonly #renderer: Renderer;
  constructor(helpers: string, ctx: RenderContext | undefined) {
    this.#renderer = new Renderer(ctx);
    parse(tokenize(helpers), { i: 0 }, this.#renderer.defines);
  }

  /** Render (or strip, without a context) one template file to text. */
  render(template: string): string {
    const nodes = parse(tokenize(template), { i: 0 }, this.#renderer.defines).nodes;
    const dot = this.#renderer.ctx ? this.#renderer.root() : undefined;
    return this.#renderer.render(nodes, dot, new Map([['$', dot]]));
  }
}

/** True if a value (deeply) holds a placeholder. */
export function hasPlaceholder(v: unknown): boolean {
  return JSON.stringify(v ?? null).includes('__tpl_');
}
