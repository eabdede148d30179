/**
 * scripts/setup.sh does nothing on a machine that has Deno and a Vulkan driver: run after the
 * suite's own set-up, with apt-get and npm replaced by stand-ins that record any call.
 */
import { equal } from "node:assert/strict";

Deno.test("setup.sh: a second run installs nothing (no apt-get, no npm)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "infini-setup-" });
  try {
    for (const tool of ["apt-get", "npm", "sudo"]) {
      await Deno.writeTextFile(`${dir}/${tool}`, `#!/bin/sh\necho ${tool} >> "${dir}/calls"\n`);
      await Deno.chmod(`${dir}/${tool}`, 0o755);
    }
    const script = new URL("../scripts/setup.sh", import.meta.url).pathname;
    const r = await new Deno.Command("bash", {
      args: [script],
      env: { PATH: `${dir}:${Deno.env.get("PATH")}` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    equal(r.code, 0, new TextDecoder().decode(r.stderr));
    const calls = await Deno.readTextFile(`${dir}/calls`).catch(() => "");
    equal(calls, "", `setup.sh installed something on a ready machine: ${calls}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
