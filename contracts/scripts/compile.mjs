#!/usr/bin/env node
// Compiles contracts/solidity/*.sol with the pinned solcjs (node_modules/solc) and writes
// contracts/artifacts/<Name>.json = {contractName, abi, bytecode, deployedBytecode}.
//
//   node contracts/scripts/compile.mjs           write the artifacts
//   node contracts/scripts/compile.mjs --check   compile in memory; exit 1 if the committed
//                                                artifacts differ (stale) or are missing
//
// Each file contracts/solidity/<Name>.sol must define a contract <Name>; that contract is the
// file's artifact. Settings are fixed (optimizer on, 200 runs, evmVersion prague, no metadata
// hash) so the output is byte-for-byte reproducible. Works from any current directory.

import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOLC_VERSION = '0.8.37';

const scriptDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(scriptDir, '..', '..');
const srcDir = join(repoRoot, 'contracts', 'solidity');
const artifactsDir = join(repoRoot, 'contracts', 'artifacts');
const STALE_MSG = 'contracts/artifacts are stale: run `node contracts/scripts/compile.mjs`';

function fail(message) {
  process.stderr.write(`compile.mjs: ${message}\n`);
  process.exit(2);
}

function usage() {
  process.stderr.write('usage: node contracts/scripts/compile.mjs [--check]\n');
  process.exit(2);
}

const args = process.argv.slice(2);
if (args.some((a) => a !== '--check')) usage();
const check = args.includes('--check');

const require = createRequire(import.meta.url);
let solc;
try {
  solc = require('solc');
} catch (err) {
  fail(`cannot load the solc package (run \`npm ci\` in ${repoRoot}): ${err.message}`);
}
if (!solc.version().startsWith(`${SOLC_VERSION}+`)) {
  fail(`expected solc ${SOLC_VERSION}, node_modules has ${solc.version()} (run \`npm ci\`)`);
}

// Source unit names are repository-relative with forward slashes, e.g. contracts/solidity/Settlement.sol.
const unitName = (absPath) => relative(repoRoot, absPath).split(sep).join('/');

const files = readdirSync(srcDir)
  .filter((f) => f.endsWith('.sol'))
  .sort();
if (files.length === 0) fail(`no .sol files in ${srcDir}`);

const sources = {};
for (const f of files) {
  sources[unitName(join(srcDir, f))] = { content: readFileSync(join(srcDir, f), 'utf8') };
}

const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'prague',
    metadata: { bytecodeHash: 'none' },
    outputSelection: {
      '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] },
    },
  },
};

// Imports between local sources resolve relative to the repository root; nothing outside it.
function findImports(path) {
  const abs = resolve(repoRoot, path);
  if (!abs.startsWith(repoRoot + sep) || !existsSync(abs)) {
    return { error: `import not found (only files inside the repository): ${path}` };
  }
  return { contents: readFileSync(abs, 'utf8') };
}

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

const diagnostics = output.errors ?? [];
const errors = diagnostics.filter((e) => e.severity === 'error');
for (const d of diagnostics) {
  process.stderr.write(`${d.formattedMessage ?? `${d.severity}: ${d.message}`}\n`);
}
if (errors.length > 0) {
  fail(`compilation failed with ${errors.length} error(s) (solc ${solc.version()})`);
}

// Build the artifact text of every source file's main contract.
const artifacts = new Map(); // file name -> text
for (const f of files) {
  const name = f.slice(0, -'.sol'.length);
  const contract = output.contracts?.[unitName(join(srcDir, f))]?.[name];
  if (!contract) fail(`contracts/solidity/${f} does not define a contract named ${name}`);
  const bytecode = contract.evm.bytecode.object;
  const deployedBytecode = contract.evm.deployedBytecode.object;
  if (!bytecode) fail(`${name} has no bytecode (abstract contract or interface?)`);
  const artifact = {
    contractName: name,
    abi: contract.abi,
    bytecode: `0x${bytecode}`,
    deployedBytecode: `0x${deployedBytecode}`,
  };
  artifacts.set(`${name}.json`, `${JSON.stringify(artifact, null, 2)}\n`);
}

const existing = existsSync(artifactsDir)
  ? readdirSync(artifactsDir).filter((f) => f.endsWith('.json'))
  : [];
const orphans = existing.filter((f) => !artifacts.has(f)).sort();

if (check) {
  const problems = [];
  for (const [file, text] of artifacts) {
    const path = join(artifactsDir, file);
    if (!existsSync(path)) problems.push(`  contracts/artifacts/${file}: missing`);
    else if (readFileSync(path, 'utf8') !== text) problems.push(`  contracts/artifacts/${file}: differs from the sources`);
  }
  for (const f of orphans) problems.push(`  contracts/artifacts/${f}: has no source in contracts/solidity`);
  if (problems.length > 0) {
    process.stderr.write(`${problems.join('\n')}\n${STALE_MSG}\n`);
    process.exit(1);
  }
  process.stdout.write(`artifacts up to date (${artifacts.size} contracts, solc ${solc.version()})\n`);
} else {
  mkdirSync(artifactsDir, { recursive: true });
  for (const [file, text] of artifacts) {
    const path = join(artifactsDir, file);
    if (existsSync(path) && readFileSync(path, 'utf8') === text) continue;
    writeFileSync(path, text);
    process.stdout.write(`wrote contracts/artifacts/${file}\n`);
  }
  for (const f of orphans) {
    rmSync(join(artifactsDir, f));
    process.stdout.write(`removed contracts/artifacts/${f} (no source)\n`);
  }
  process.stdout.write(`artifacts up to date (${artifacts.size} contracts, solc ${solc.version()})\n`);
}
