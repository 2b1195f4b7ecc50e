// Regenerates the Python parser from the Kaitai spec with the npm build of
// kaitai-struct-compiler (it has no command-line entry point, only this JS API).
//
//   cd formats && npm ci && node build.mjs [OUT_DIR]      (OUT_DIR defaults to formats/)
//
// tests/unit/test_kaitai.py runs it into a temporary folder and compares the result with
// the committed formats/qemu_migration.py.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const compiler = require("kaitai-struct-compiler");
const yaml = require("js-yaml");

const here = dirname(fileURLToPath(import.meta.url));
const outDir = process.argv[2] ?? here;
const ksy = yaml.load(readFileSync(join(here, "qemu_migration.ksy"), "utf8"));
const files = await compiler.compile("python", ksy, null, false);
for (const [name, text] of Object.entries(files)) {
  writeFileSync(join(outDir, name), text);
  console.log(`${join(outDir, name)} (kaitai-struct-compiler ${compiler.version})`);
}
