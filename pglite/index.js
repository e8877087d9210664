// pglite_sync for PGlite: a drop-in for @electric-sql/pglite-sync.
//
//   const pg = await PGlite.create({ extensions: { electric: electricSync() } })
//   const sub = await pg.electric.syncShapeToTable({ shape: { url, params: { table } },
//     table: 'items', primaryKey: ['id'], shapeKey: 'items' })
//
// The C extension (the bundle next to this module) parses, applies and keeps
// all state, in the database, in the same transaction as the data.  This
// module only creates the extension, calls its SQL functions, and runs the
// fetch loop PGlite cannot run from C: electric.next_request() says what to
// fetch (or how long to wait), electric.ingest_response() takes the answer.
// Nothing is parsed or applied here, and a response is held in memory only
// until it is handed over.

const bundlePath = new URL('./pglite_sync.tar.gz', import.meta.url)

// query options that send a bytea parameter as its bytes (see ingest())
const RAW_BYTEA = { serializers: { 17: (bytes) => bytes } }

// the seed's initialInsertMethod names; 'useCopy' is its hidden alias of 'csv'
const METHODS = { insert: 'insert', csv: 'copy', copy: 'copy', useCopy: 'copy', json: 'json' }

export function electricSync(options = {}) {
  const { debug = false, metadataSchema = 'electric' } = options ?? {}
  if (metadataSchema !== 'electric')
    throw new TypeError(`pglite_sync: metadataSchema "${metadataSchema}" is not supported; the extension lives in schema "electric"`)
  return {
    name: 'pglite_sync',
    setup: async (pg) => {
      const sync = new Sync(pg, debug)
      return { bundlePath, namespaceObj: sync.namespace(), close: () => sync.close() }
    },
  }
}

class Sync {
  constructor(pg, debug) {
    this.pg = pg
    this.debug = debug
    this.ready = null
    this.running = new Map() // subscription name -> Subscription
    this.stopping = new Map() // subscription name -> its unsubscribe, while it runs
  }

  namespace() {
    return {
      initMetadataTables: () => this.init(),
      syncShapeToTable: (opts) => this.syncShapeToTable(opts),
      syncShapesToTables: (opts) => this.syncShapesToTables(opts),
      deleteSubscription: (key) => this.deleteSubscription(key),
    }
  }

  log(...args) {
    if (this.debug) console.log('[pglite_sync]', ...args)
  }

  // Once per instance: the extension, at the bundle's version (a dataDir
  // made with an older bundle is updated in place, as ALTER EXTENSION ...
  // UPDATE keeps subscriptions and positions; only a superuser may, and
  // anyone else goes on with the older SQL, whose functions say what needs
  // the update), and no subscription left "running" by an earlier session
  // (nothing drives it any more; a keyed one resumes from its stored
  // position when it is subscribed again).
  init() {
    this.ready ??= this.pg.exec(`
      CREATE EXTENSION IF NOT EXISTS pglite_sync;
      DO $$BEGIN
        IF (SELECT installed_version <> default_version FROM pg_catalog.pg_available_extensions WHERE name = 'pglite_sync')
           AND (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
          ALTER EXTENSION pglite_sync UPDATE;
        END IF;
      END$$;
      SELECT electric.unsubscribe(name) FROM electric.subscriptions WHERE state <> 'stopped';
      SELECT pg_catalog.set_config('electric.syncing', 'false', false);`)
      .catch((e) => {
        this.ready = null
        throw e
      })
    return this.ready
  }

  async syncShapeToTable(opts) {
    check(opts && typeof opts === 'object', 'syncShapeToTable needs an options object')
    const member = shapeOptions(opts, 'syncShapeToTable')
    const method = insertMethod(opts)
    const key = shapeKey(opts.shapeKey)
    await resolveParams(member.shape)
    await this.init()
    await this.stopping.get(key) // unsubscribe() not awaited, then the same key again
    const { rows } = await this.pg.query(
      `SELECT electric.sync_shape_to_table($1::jsonb, $2, $3::text[], $4, $5::jsonb,
              shape_key => $6, initial_insert_method => $7, on_must_refetch => $8::regprocedure) AS name`,
      [JSON.stringify(member.shape), member.table_name, member.primary_key, member.schema_name ?? 'public',
        member.map_columns === undefined ? null : JSON.stringify(member.map_columns), key, method,
        member.on_must_refetch ?? null],
    )
    return this.start(rows[0].name, { [rows[0].name]: member.live }, null, opts)
  }

  async syncShapesToTables(opts) {
    check(opts && typeof opts === 'object', 'syncShapesToTables needs an options object')
    check(opts.shapes && typeof opts.shapes === 'object' && Object.keys(opts.shapes).length > 0,
      'syncShapesToTables needs shapes: an object of at least one named shape')
    const members = {}
    const live = {}
    for (const [name, o] of Object.entries(opts.shapes)) {
      const m = shapeOptions(o ?? {}, `shape "${name}"`)
      live[name] = m.live
      delete m.live
      members[name] = m
    }
    const method = insertMethod(opts)
    for (const m of Object.values(members)) await resolveParams(m.shape)
    await this.init()
    await this.stopping.get(shapeKey(opts.key))
    const { rows } = await this.pg.query(
      'SELECT electric.sync_shapes_to_tables($1::jsonb, $2, $3) AS name',
      [JSON.stringify(members), shapeKey(opts.key), method],
    )
    return this.start(rows[0].name, live, Object.keys(members), opts)
  }

  async deleteSubscription(key) {
    check(typeof key === 'string' && key !== '', 'deleteSubscription needs a subscription key')
    await this.running.get(key)?.stop()
    await this.init()
    try {
      await this.pg.query('SELECT electric.delete_subscription($1)', [key])
    } catch (e) {
      if (e?.code !== '42704') throw e // an unknown key: nothing to delete, as in the seed
    }
  }

  start(name, live, members, opts) {
    const sub = new Subscription(this, name, live, members, opts)
    this.running.set(name, sub)
    sub.run()
    return sub.handle()
  }

  async close() {
    await Promise.all([...this.running.values()].map((s) => s.abort()))
  }
}

// One subscription: a fetch loop per shape, all feeding the one engine.
class Subscription {
  constructor(sync, name, live, members, opts) {
    this.sync = sync
    this.pg = sync.pg
    this.name = name
    this.live = live // shape name -> {headers: dynamic ones, fetch, signal}
    this.members = members // null: a single shape (next_request's shape argument is NULL)
    this.onInitialSync = opts.onInitialSync
    this.onError = opts.onError
    this.upToDate = false
    this.initialSynced = false
    this.controller = new AbortController()
    this.loops = []
    this.stopping = null
    for (const l of Object.values(live))
      if (l.signal) {
        if (l.signal.aborted) queueMicrotask(() => this.stop())
        else l.signal.addEventListener('abort', () => this.stop(), { once: true })
      }
  }

  handle() {
    const sub = this
    return {
      name: sub.name,
      get isUpToDate() {
        return sub.upToDate
      },
      unsubscribe: () => sub.stop(),
    }
  }

  run() {
    const shapes = this.members ?? [null]
    this.loops = shapes.map((shape) => this.loop(shape).catch((e) => this.report(e)))
  }

  // Stop fetching, then stop the subscription in the database.  As the
  // seed's unsubscribe() it may be called and not awaited, also just before
  // pg.close(): the promise never rejects (an error goes to onError).
  stop() {
    if (this.stopping) return this.stopping
    this.stopping = (async () => {
      await this.abort()
      if (this.sync.running.get(this.name) === this) this.sync.running.delete(this.name)
      try {
        await this.pg.query('SELECT electric.unsubscribe($1)', [this.name])
      } catch (e) {
        // deleted meanwhile, or the instance is closing: nothing runs it any more
        if (e?.code !== '42704' && !this.pg.closed && !/PGlite is clos/.test(e?.message ?? '')) this.callOnError(e)
      } finally {
        if (this.sync.stopping.get(this.name) === this.stopping) this.sync.stopping.delete(this.name)
      }
    })()
    this.sync.stopping.set(this.name, this.stopping)
    return this.stopping
  }

  // stop fetching (the database keeps the subscription)
  async abort() {
    this.controller.abort()
    await Promise.allSettled(this.loops)
  }

  // The client's shape.onError: it may answer {headers} to retry with them
  // at once (a refreshed token).  They are stored as the subscription's
  // headers (electric.alter_subscription), which ends the engine's wait.
  // true when it did; params would change the shape, which a stored
  // subscription cannot.
  async recover(l, req, e) {
    if (typeof l.onError !== 'function') return false
    let r
    try {
      r = await l.onError(e)
    } catch (err) {
      this.report(err)
      return true
    }
    if (r?.params) this.report(new TypeError('pglite_sync: shape.onError may not return params: they define the shape; subscribe again instead'))
    if (!r?.headers || typeof r.headers !== 'object') return false
    const headers = { ...(req.headers ?? {}) }
    for (const [k, v] of Object.entries(r.headers)) {
      if (typeof v === 'function') l.headers[k] = v
      else if (v !== undefined && v !== null) {
        headers[k] = String(v)
        delete l.headers[k]
      }
    }
    await this.pg.query('SELECT electric.alter_subscription($1, headers => $2::jsonb)', [this.name, JSON.stringify(headers)])
    return true
  }

  get aborted() {
    return this.controller.signal.aborted
  }

  report(e) {
    if (this.aborted) return
    this.callOnError(e)
  }

  callOnError(e) {
    this.sync.log(this.name, 'error:', e?.message ?? e)
    if (this.onError) {
      try {
        this.onError(e instanceof Error ? e : new Error(String(e)))
      } catch {
        // the callback's own failure is not ours to handle
      }
    }
  }

  async value(sql, params, opts) {
    const { rows } = await this.pg.query(sql, params, opts)
    return rows[0].r
  }

  async loop(shape) {
    const l = this.live[shape ?? this.name]
    let failures = 0
    let ahead = null // the next page, on its way while this one is ingested
    try {
      while (!this.aborted) {
        const req = await this.value('SELECT electric.next_request($1, $2) AS r', [this.name, shape])
        if (req === null) return // stopped (unsubscribed from SQL, or deleted)
        const early = ahead?.serves(req) ? await ahead.res : null
        ahead?.abort()
        ahead = null
        if (req.wait_ms !== undefined) {
          await sleep(Number(req.wait_ms), this.controller.signal)
          continue
        }
        const res = early ?? (await this.fetchOnce(req, l))
        if (this.aborted) return // nothing is ingested after unsubscribe()
        ahead = this.fetchAhead(req, res, l)
        let out
        try {
          out = await this.ingest(res, shape)
        } catch (e) {
          // stopped while the request ran: next_request says so; anything else
          // twice in a row ends this loop
          if (++failures > 1) throw e
          this.report(e)
          continue
        }
        failures = 0
        this.sync.log(this.name, shape ?? '', res.status, out)
        this.upToDate = out.is_up_to_date
        // as the official client: retryable failures (network, 5xx, 429) are
        // retried quietly; one that retrying alone will not fix is reported
        if (out.error !== null && out.state === 'error') {
          const e = fetchError(out.error, req, res)
          if (!(await this.recover(l, req, e))) this.report(e)
        } else if (out.error !== null) this.sync.log(this.name, 'retrying:', out.error)
        if (out.is_up_to_date && !this.initialSynced) {
          this.initialSynced = true
          if (this.onInitialSync) {
            try {
              this.onInitialSync()
            } catch (e) {
              this.report(e)
            }
          }
        }
      }
    } finally {
      ahead?.abort()
    }
  }

  // While PGlite ingests a page of a snapshot, the next page is already on
  // its way, as a worker's next request is while it loads (and as the
  // official client prefetches chunks): the request the engine asks for
  // after a page that is not up to date is the same one with the offset and
  // handle of that page's headers.  It is only a guess: its
  // response is used only when next_request() then asks for exactly that URL
  // with exactly those headers, and is aborted otherwise (a rejected page, a
  // 409 in the body, a backoff, an unsubscribe), so nothing the engine did
  // not ask for is ever ingested.  At most one page waits here.
  fetchAhead(req, res, l) {
    const h = res.headers
    const offset = h['electric-offset']
    const handle = h['electric-handle']
    const at = req.url.search(/[?&]offset=/)
    // values the engine would put in the URL unencoded (offsets and handles are)
    const plain = (v) => typeof v === 'string' && /^[A-Za-z0-9._~-]+$/.test(v)
    if (res.status !== 200 || req.live || 'electric-up-to-date' in h || !plain(offset) || !plain(handle) || at < 0) return null
    const url = `${req.url.slice(0, at + 1)}offset=${offset}&handle=${handle}`
    const headers = JSON.stringify(req.headers)
    const stop = new AbortController()
    return {
      serves: (next) => next.url === url && JSON.stringify(next.headers) === headers,
      // a headers function that throws: no early response, the request is made again
      res: this.fetchOnce({ ...req, url }, l, stop.signal).catch(() => null),
      abort: () => stop.abort(),
    }
  }

  // A body reaches the engine as a bytea parameter in binary format: the
  // serializer for bytea (OID 17) hands PGlite the Uint8Array itself, which
  // its protocol writer sends as raw bytes.  That is a few copies, for any
  // role and any bytes: PGlite's own bytea serializer would build hex in
  // JavaScript, text would be measured and encoded character by character,
  // and the query's blob (/dev/blob) is copied a byte at a time.
  async ingest(res, shape) {
    const args = [this.name, res.status, JSON.stringify(res.headers)]
    const call = (body, extra, opts) =>
      this.value(`SELECT electric.ingest_response($1, $2, $3::jsonb, ${body}, $4) AS r`, [...args, shape, ...extra], opts)
    if (res.status === 0) {
      // no complete response: the body tells the engine what went wrong
      const e = res.error
      const text = String(e?.cause?.code ?? e?.cause?.message ?? e?.message ?? e ?? 'no response').replace(/\0/g, '')
      return call("pg_catalog.convert_to($5, 'UTF8')", [text.slice(0, 400)])
    }
    return call('$5::bytea', [res.body], RAW_BYTEA)
  }

  // One request, whole: {status, headers, body}.  A response that did not
  // arrive whole is status 0 with the headers seen, which the engine treats
  // as a network error.
  async fetchOnce(req, l, stop = null) {
    const headers = { ...req.headers }
    for (const [k, f] of Object.entries(l.headers)) {
      const v = await f()
      if (v !== undefined && v !== null) headers[k] = String(v)
    }
    this.sync.log(this.name, 'GET', req.url)
    const timeout = new AbortController()
    const timer = setTimeout(() => timeout.abort(new Error(`request timed out after ${req.timeout_ms} ms`)), req.timeout_ms)
    const signal = anySignal([this.controller.signal, timeout.signal, ...(stop ? [stop] : [])])
    const seen = {}
    try {
      const res = await l.fetch(req.url, { headers, signal })
      res.headers.forEach((v, k) => {
        seen[k] = v
      })
      const body = new Uint8Array(await res.arrayBuffer())
      return { status: res.status, headers: seen, body }
    } catch (e) {
      return { status: 0, headers: seen, body: null, error: timeout.signal.aborted ? timeout.signal.reason : e }
    } finally {
      clearTimeout(timer)
    }
  }
}

// ---- options ----------------------------------------------------------------

function check(ok, message) {
  if (!ok) throw new TypeError(`pglite_sync: ${message}`)
}

function shapeKey(key) {
  check(key === undefined || key === null || typeof key === 'string', 'shapeKey must be a string or null')
  return key || null // '' means no persistence, as in the seed
}

function insertMethod(opts) {
  let m = opts.initialInsertMethod ?? 'insert'
  check(Object.hasOwn(METHODS, m), `unknown initialInsertMethod "${m}" (insert, csv or json)`)
  if (opts.useCopy) {
    if (m === 'insert') {
      console.warn('pglite_sync: useCopy is deprecated, use initialInsertMethod: "csv"')
      m = 'csv'
    }
  }
  return METHODS[m]
}

// One shape's options -> the member object of the SQL API (and what the loop
// needs: dynamic headers, the fetch function, the user's signal).
function shapeOptions(o, what) {
  const s = o.shape
  check(s && typeof s === 'object' && typeof s.url === 'string', `${what}: shape.url is required`)
  check(typeof o.table === 'string' && o.table !== '', `${what}: table is required`)
  check(Array.isArray(o.primaryKey) && o.primaryKey.length > 0, `${what}: primaryKey must be a non-empty array`)
  check(o.mapColumns === undefined || o.mapColumns === null || (typeof o.mapColumns === 'object' && !Array.isArray(o.mapColumns)),
    `${what}: mapColumns must be an object {localColumn: shapeColumn}; a JavaScript function cannot run inside the database`
    + ' (map with a SQL function through electric.sync_shape_to_table(map_function => ...))')
  check(o.onMustRefetch === undefined || o.onMustRefetch === null || typeof o.onMustRefetch === 'string',
    `${what}: onMustRefetch must name a SQL function (subscription text) RETURNS void, e.g. "my_clear(text)";`
    + ' a JavaScript function cannot run inside the refetch transaction')
  const staticHeaders = {}
  const dynamicHeaders = {}
  for (const [k, v] of Object.entries(s.headers ?? {})) {
    if (typeof v === 'function') dynamicHeaders[k] = v
    else if (v !== undefined && v !== null) staticHeaders[k] = String(v)
  }
  const shape = { url: s.url, params: { ...(s.params ?? {}) } }
  if (Object.keys(staticHeaders).length) shape.headers = staticHeaders
  // the client's top-level options that define the shape or where it starts;
  // liveSse needs no mapping: the host long-polls (the engine asks it to)
  if (s.log !== undefined) shape.params.log = s.log
  if (s.offset !== undefined) {
    check(s.offset === 'now' || s.offset === '-1', `${what}: shape.offset must be "now" or "-1" (a stored position resumes by shapeKey)`)
    if (s.offset === 'now') shape.offset = 'now'
  }
  const fetchClient = s.fetchClient ?? globalThis.fetch
  const member = {
    shape,
    table_name: o.table,
    primary_key: o.primaryKey,
    live: { headers: dynamicHeaders, fetch: fetchClient, signal: s.signal ?? null, onError: s.onError ?? null },
  }
  if (o.schema) member.schema_name = o.schema
  if (o.mapColumns) member.map_columns = o.mapColumns
  if (o.onMustRefetch) member.on_must_refetch = o.onMustRefetch
  return member
}

// ---- small helpers ----------------------------------------------------------

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done() {
      clearTimeout(t)
      signal.removeEventListener('abort', done)
      resolve()
    }
    signal.addEventListener('abort', done, { once: true })
  })
}

function anySignal(signals) {
  if (AbortSignal.any) return AbortSignal.any(signals)
  const c = new AbortController()
  for (const s of signals) s.addEventListener('abort', () => c.abort(s.reason), { once: true })
  return c.signal
}

// An error as the client's FetchError carries it: status, url, and the
// answer's body as json (when it is JSON) and text.
function fetchError(message, req, res) {
  const e = new Error(message)
  e.name = 'FetchError'
  e.status = res.status || undefined
  e.url = req.url
  if (res.error !== undefined) e.cause = res.error
  if (res.body) {
    e.text = new TextDecoder().decode(res.body)
    try {
      e.json = JSON.parse(e.text)
    } catch {
      // not JSON
    }
  }
  return e
}

// Params given as functions (sync or async), as the client allows: resolved
// once, when subscribing, since they define the shape.
async function resolveParams(shape) {
  for (const [k, v] of Object.entries(shape.params))
    if (typeof v === 'function') shape.params[k] = await v()
}
