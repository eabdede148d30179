/**
 * Small file helpers every layer may use: atomic writes and "is there something at this path".
 */

/**
 * Writes `chunks` to `path` atomically: a temporary file in the same directory, fsync, rename
 * over `path`, then fsync of the directory. A crash at any moment leaves either the old file
 * or the new one, never a torn one. The temporary file is removed on failure (an error thrown
 * by an async `chunks` included, so a producer can abandon a write that went wrong).
 */
export async function writeFileAtomic(
  path: string,
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash >= 0 ? path.slice(0, slash) || "/" : ".";
  const base = path.slice(slash + 1);
  const tmp = `${dir}/.${base}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  let ok = false;
  try {
    for await (const c of chunks) {
      let done = 0;
      while (done < c.length) done += await file.write(c.subarray(done));
    }
    await file.sync();
    ok = true;
  } finally {
    file.close();
    if (!ok) await Deno.remove(tmp).catch(() => {});
  }
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dir);
}

/** writeFileAtomic of one UTF-8 string. */
export function writeTextAtomic(path: string, text: string): Promise<void> {
  return writeFileAtomic(path, [new TextEncoder().encode(text)]);
}

/** fsync of a directory so that a rename survives a power cut (best effort where unsupported). */
export async function syncDir(dir: string): Promise<void> {
  let d: Deno.FsFile | undefined;
  try {
    d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // Some platforms cannot open or fsync a directory; the rename is still atomic.
  } finally {
    d?.close();
  }
}

/** What is at `path`: "file", "dir", "other", or null when nothing (or it cannot be seen). */
export async function pathKind(path: string): Promise<"file" | "dir" | "other" | null> {
  try {
    const st = await Deno.stat(path);
    return st.isFile ? "file" : st.isDirectory ? "dir" : "other";
  } catch {
    return null;
  }
}

/** True when something exists at `path`. */
export async function exists(path: string): Promise<boolean> {
  return (await pathKind(path)) !== null;
}

/** True when `path` is a regular file. */
export async function isFile(path: string): Promise<boolean> {
  return (await pathKind(path)) === "file";
}

/** True when `path` is a directory. */
export async function isDir(path: string): Promise<boolean> {
  return (await pathKind(path)) === "dir";
}
