// pglite_sync for PGlite: electricSync() is the extension object to pass to
// PGlite.create({extensions: {electric: electricSync()}}).  For now it only
// loads the bundle (the C extension); CREATE EXTENSION pglite_sync is up to
// the caller.  The pg.electric API of @electric-sql/pglite-sync comes later.

// The bundle sits next to this module in the built package (build/pglite/).
const bundlePath = new URL('./pglite_sync.tar.gz', import.meta.url)

export function electricSync(options = {}) {
  return {
    name: 'pglite_sync',
    setup: async () => ({ bundlePath }),
  }
}
