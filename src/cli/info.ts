/** `info`: the WebGPU adapter, its limits and features, and the tuning chosen for it. */
import { fmtBytes, Runtime } from "../gpu/runtime.ts";
import { LIMIT_HELP, LIMIT_OPTION, limitFlags, parseCommand } from "./flags.ts";
import { SUMMARIES } from "./summaries.ts";

const HELP = `infini info: ${SUMMARIES.info}

Usage: infini info [--json] [--limit NAME=BYTES...]

Options:
  --json     print a JSON object instead of a table
${LIMIT_HELP}
  -h, --help this help

Examples:
  deno task info
  deno run -A main.ts info --json`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseCommand(
    { name: "info", help: HELP, options: { json: { type: "boolean" }, ...LIMIT_OPTION } },
    args,
  );
  if (!parsed) return 0;
  const { values } = parsed;
  const rt = await Runtime.create({ limits: limitFlags(values.limit) });
  const i = rt.adapterInfo;
  const limits: Record<string, { adapter: number; device: number }> = {};
  for (const [k, v] of Object.entries(rt.adapterLimits)) {
    limits[k] = { adapter: v, device: rt.limits[k as keyof GPUSupportedLimits] as number };
  }
  const report = {
    adapter: {
      description: i.description,
      vendor: i.vendor,
      architecture: i.architecture,
      device: i.device,
      isFallbackAdapter: rt.isFallbackAdapter,
    },
    profile: rt.profile,
    features: rt.features,
    limits,
  };
  if (values.json) {
    console.log(JSON.stringify(report, null, 2));
  } else {
    console.log(`adapter   ${rt.describe()}`);
    console.log(
      `vendor    ${i.vendor || "-"}  architecture ${i.architecture || "-"}  device ${
        i.device || "-"
      }`,
    );
    console.log(`features  ${rt.features.join(", ")}`);
    console.log(`limits (device as granted / adapter maximum):`);
    for (const [k, v] of Object.entries(limits)) {
      const show = (n: number) => (k.endsWith("Size") && n >= 65536 ? fmtBytes(n) : String(n));
      console.log(`  ${k.padEnd(36)} ${show(v.device).padStart(12)} / ${show(v.adapter)}`);
    }
  }
  rt.destroy();
  return 0;
}
