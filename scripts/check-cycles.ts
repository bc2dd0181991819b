/**
 * Fails when the value imports of workflows/, activities/, client/, contract/ and lib/ form a cycle, or cross a layer
 * the wrong way (activities and contract never import workflows or client; workflows never import client). Type-only
 * imports are allowed across layers (a workflow proxies the activities' type) and do not count as edges. Part of
 * `npm run lint` and .ci/run, so the circle the rebuild removed cannot come back. Uses the TypeScript parser that
 * the project already has; no extra dependency.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const root = path.resolve(__dirname, '..');
const LAYERS = ['workflows', 'activities', 'client', 'contract', 'lib'];
/** Which layers each layer may import values from (besides itself). */
const ALLOWED: Record<string, string[]> = {
  contract: ['lib'],
  lib: ['contract'],
  workflows: ['contract', 'lib'],
  activities: ['contract', 'lib', 'vendors'],
  client: ['workflows', 'contract', 'lib'],
};

function files(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function resolve(from: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const base = path.resolve(path.dirname(from), spec);
  for (const c of [`${base}.ts`, path.join(base, 'index.ts')]) if (existsSync(c)) return c;
  return null;
}

/** Value imports and re-exports of a file (type-only ones skipped). */
function valueImports(file: string): string[] {
  const src = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, false);
  const out: string[] = [];
  for (const st of src.statements) {
    let spec: string | null = null;
    if (ts.isImportDeclaration(st) && !st.importClause?.isTypeOnly) {
      const named = st.importClause?.namedBindings;
      const allTypes =
        !!named &&
        ts.isNamedImports(named) &&
        named.elements.length > 0 &&
        named.elements.every((e) => e.isTypeOnly) &&
        !st.importClause?.name;
      if (!allTypes) spec = (st.moduleSpecifier as ts.StringLiteral).text;
    } else if (ts.isExportDeclaration(st) && st.moduleSpecifier && !st.isTypeOnly) {
      spec = (st.moduleSpecifier as ts.StringLiteral).text;
    }
    const target = spec ? resolve(file, spec) : null;
    if (target) out.push(target);
  }
  return out;
}

const layerOf = (f: string) => path.relative(root, f).split(path.sep)[0];
const all = LAYERS.flatMap((l) => (existsSync(path.join(root, l)) ? files(path.join(root, l)) : []));
const graph = new Map(all.map((f) => [f, valueImports(f).filter((t) => LAYERS.includes(layerOf(t)))]));
const problems: string[] = [];

for (const [f, targets] of graph) {
  for (const t of targets) {
    const a = layerOf(f);
    const b = layerOf(t);
    if (a !== b && !ALLOWED[a]?.includes(b)) {
      problems.push(`${path.relative(root, f)} imports ${path.relative(root, t)}: ${a}/ must not import ${b}/`);
    }
  }
}

// Tarjan's strongly connected components: any component larger than one file is a cycle.
let index = 0;
const idx = new Map<string, number>();
const low = new Map<string, number>();
const stack: string[] = [];
const onStack = new Set<string>();
function strong(v: string): void {
  idx.set(v, index);
  low.set(v, index++);
  stack.push(v);
  onStack.add(v);
  for (const w of graph.get(v) ?? []) {
    if (!idx.has(w)) {
      strong(w);
      low.set(v, Math.min(low.get(v)!, low.get(w)!));
    } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
  }
  if (low.get(v) === idx.get(v)) {
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(path.relative(root, w));
    } while (w !== v);
    if (component.length > 1) problems.push(`import cycle: ${component.sort().join(' ↔ ')}`);
  }
}
for (const f of graph.keys()) if (!idx.has(f)) strong(f);

if (problems.length) {
  for (const p of problems) process.stderr.write(`${p}\n`);
  process.exit(1);
}
process.stdout.write(`no import cycles among ${graph.size} files of ${LAYERS.join(', ')}\n`);
