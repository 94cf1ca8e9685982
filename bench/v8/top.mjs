// Summarise a `node --cpu-prof` profile of bench/v8/harness.mjs: self and inclusive time per
// function (wasm functions carry their Rust names when the .wasm keeps its name section).
//
//   node bench/v8/top.mjs PROFILE.cpuprofile [ROWS] [FILTER]
import { readFileSync } from 'node:fs';

const [file, rowsArg, filter] = process.argv.slice(2);
const rows = Number(rowsArg || 40);
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children || []) parent.set(c, n.id);

// Samples per node, with time deltas.
const selfUs = new Map();
prof.samples.forEach((id, i) => {
  selfUs.set(id, (selfUs.get(id) || 0) + (prof.timeDeltas[i] || 0));
});

const clean = (name) => name
  .replace(/^\$/, '')
  .replace(/::h[0-9a-f]{16}$/, '')
  .replace(/^_ZN/, '');
const nameOf = (n) => clean(n.callFrame.functionName || `(${n.callFrame.url || 'anonymous'})`);

const self = new Map();
const incl = new Map();
let total = 0;
for (const [id, us] of selfUs) {
  const n = byId.get(id);
  const name = nameOf(n);
  if (name === '(idle)' || name === '(program)' || name === '(garbage collector)') {
    self.set(name, (self.get(name) || 0) + us);
    continue;
  }
  total += us;
  self.set(name, (self.get(name) || 0) + us);
  // Inclusive: count each function once per sample stack.
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const nm = nameOf(byId.get(cur));
    if (!seen.has(nm)) {
      seen.add(nm);
      incl.set(nm, (incl.get(nm) || 0) + us);
    }
  }
}

const pct = (us) => `${((100 * us) / total).toFixed(1).padStart(5)} %`;
const show = (title, map) => {
  console.log(`\n${title} (of ${(total / 1000).toFixed(0)} ms busy)`);
  [...map]
    .filter(([n]) => !filter || n.includes(filter))
    .sort((a, b) => b[1] - a[1])
    .slice(0, rows)
    .forEach(([n, us]) => console.log(`${pct(us)}  ${n.slice(0, 150)}`));
};
show('self', self);
show('inclusive', incl);
