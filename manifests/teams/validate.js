// The Teams app manifest against Microsoft's own schema for its manifestVersion, offline
// (npm @microsoft/app-manifest ships every schema), and its icons' sizes.
//
// usage: node validate.js MANIFEST_DIR   (NODE_PATH reaching @microsoft/app-manifest)
const fs = require("fs");
const path = require("path");
const { AppManifestUtils } = require("@microsoft/app-manifest");

function pngSize(file) {
  const b = fs.readFileSync(file);
  if (b.toString("latin1", 1, 4) !== "PNG") throw new Error(`${file}: not a PNG`);
  return [b.readUInt32BE(16), b.readUInt32BE(20), b[25]];
}

(async () => {
  const dir = process.argv[2];
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, "manifest.json"), "utf8"));
  const errors = await AppManifestUtils.validateAgainstSchema(manifest);
  if (errors.length) {
    console.error(`manifest.json: ${errors.join("; ")}`);
    process.exit(1);
  }
  const [cw, ch] = pngSize(path.join(dir, manifest.icons.color));
  const [ow, oh, colourType] = pngSize(path.join(dir, manifest.icons.outline));
  if (cw !== 192 || ch !== 192) throw new Error(`colour icon is ${cw}x${ch}, not 192x192`);
  if (ow !== 32 || oh !== 32 || colourType !== 6) throw new Error(`outline icon is ${ow}x${oh} (colour type ${colourType}), not 32x32 with transparency`);
  console.log(`ok: manifest ${manifest.manifestVersion}, icons 192x192 and 32x32`);
})().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
