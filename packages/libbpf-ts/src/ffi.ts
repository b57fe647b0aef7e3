import koffi from 'koffi';
import type { LibraryHandle, TypeObject } from 'koffi';
import { LibbpfLoadError } from './errors.ts';

/** Native pointers are BigInts in koffi 3; NULL comes back as null. */
export type Ptr = bigint;
type MaybePtr = Ptr | null;
type Bytes = Buffer | Uint8Array;

/**
 * The subset of libbpf (1.1 ABI) and libc this package calls. Functions returning int follow
 * libbpf 1.x conventions: negative errno on failure. Pointer-returning ones give null and set
 * errno, read with `errno()`.
 */
/** struct bpf_test_run_opts, the fields Dyad sets and reads (libbpf/bpf.h). */
export interface TestRunOpts {
  sz: number;
  data_in: Buffer | null;
  data_out: Buffer | null;
  data_size_in: number;
  data_size_out: number;
  ctx_in: null;
  ctx_out: null;
  ctx_size_in: number;
  ctx_size_out: number;
  retval: number;
  repeat: number;
  duration: number;
  flags: number;
  cpu: number;
  batch_size: number;
}

export interface LibbpfBindings {
  errno(): number;
  numPossibleCpus(): number;

  objectOpenFile(path: string, opts: null): MaybePtr;
  objectLoad(obj: Ptr): number;
  objectClose(obj: Ptr): void;
  objectFindMap(obj: Ptr, name: string): MaybePtr;
  objectNextMap(obj: Ptr, prev: MaybePtr): MaybePtr;
  objectFindProgram(obj: Ptr, name: string): MaybePtr;
  objectNextProgram(obj: Ptr, prev: MaybePtr): MaybePtr;

  mapName(map: Ptr): string;
  mapInnerMap(map: Ptr): MaybePtr;
  mapFd(map: Ptr): number;
  mapType(map: Ptr): number;
  mapKeySize(map: Ptr): number;
  mapValueSize(map: Ptr): number;
  mapMaxEntries(map: Ptr): number;
  mapSetMaxEntries(map: Ptr, n: number): number;
  mapSetPinPath(map: Ptr, path: string | null): number;
  mapPinPath(map: Ptr): string | null;
  mapIsPinned(map: Ptr): boolean;
  mapUnpin(map: Ptr, path: string | null): number;
  mapUpdateElemChecked(
    map: Ptr,
    key: Bytes,
    keySize: number,
    value: Bytes,
    valueSize: number,
    flags: bigint,
  ): number;
  mapLookupElemChecked(
    map: Ptr,
    key: Bytes,
    keySize: number,
    value: Bytes,
    valueSize: number,
    flags: bigint,
  ): number;
  mapDeleteElemChecked(map: Ptr, key: Bytes, keySize: number, flags: bigint): number;

  programName(prog: Ptr): string;
  programFd(prog: Ptr): number;
  programSetAutoload(prog: Ptr, autoload: boolean): number;
  /** Runs a loaded program on a packet in the kernel (BPF_PROG_TEST_RUN); fills retval, duration. */
  progTestRun(progFd: number, opts: TestRunOpts): number;

  objGet(path: string): number;
  objPin(fd: number, path: string): number;
  objGetInfoByFd(fd: number, info: Bytes, len: number[]): number;
  mapGetFdById(id: number): number;
  mapCreate(
    type: number,
    name: string | null,
    keySize: number,
    valueSize: number,
    maxEntries: number,
    opts: Bytes | null,
  ): number;
  mapUpdateElem(fd: number, key: Bytes, value: Bytes, flags: bigint): number;
  mapLookupElem(fd: number, key: Bytes, value: Bytes): number;
  mapDeleteElem(fd: number, key: Bytes): number;
  mapGetNextKey(fd: number, key: Bytes | null, next: Bytes): number;
  mapUpdateBatch(fd: number, keys: Bytes, values: Bytes, count: number[], opts: Bytes): number;
  /** bpf_map_update_batch on a libuv worker; `count` is updated before `done` runs. */
  mapUpdateBatchAsync(
    fd: number,
    keys: Bytes,
    values: Bytes,
    count: number[],
    opts: Bytes,
    done: (err: unknown, rc: number) => void,
  ): void;
  mapDeleteBatch(fd: number, keys: Bytes, count: number[], opts: Bytes): number;
  mapLookupBatch(
    fd: number,
    inBatch: Bytes | null,
    outBatch: Bytes,
    keys: Bytes,
    values: Bytes,
    count: number[],
    opts: Bytes,
  ): number;

  tcHookCreate(hook: Bytes): number;
  tcHookDestroy(hook: Bytes): number;
  tcAttach(hook: Bytes, opts: Bytes): number;
  tcDetach(hook: Bytes, opts: Bytes): number;
  tcQuery(hook: Bytes, opts: Bytes): number;

  /** libc mmap; MAP_FAILED comes back as null (errno set). */
  mmap(length: number, prot: number, flags: number, fd: number, offset: number): MaybePtr;
  munmap(addr: Ptr, length: number): number;
  pageSize(): number;
  epollCreate1(flags: number): number;
  /** `event` is a packed struct epoll_event (u32 events, u64 data: 12 bytes on x86-64). */
  epollCtl(epfd: number, op: number, fd: number, event: Bytes): number;
  /** Runs epoll_wait on a libuv worker so the event loop never blocks. */
  epollWaitAsync(
    epfd: number,
    events: Bytes,
    max: number,
    timeoutMs: number,
    done: (err: unknown, n: number) => void,
  ): void;
  /** Copies `len` bytes at a native address into a fresh Buffer. */
  copyOut(ptr: Ptr, len: number): Buffer;
  /** The `len` bytes at a native address as an ArrayBuffer over that memory (no copy). */
  view(ptr: Ptr, len: number): ArrayBuffer;

  btfParse(path: string, ext: null): MaybePtr;
  btfFree(btf: Ptr): void;
  btfFindByNameKind(btf: Ptr, name: string, kind: number): number;
  btfTypeById(btf: Ptr, id: number): MaybePtr;
  btfNameByOffset(btf: Ptr, off: number): string | null;
  btfResolveSize(btf: Ptr, id: number): bigint | number;

  close(fd: number): number;
}

// koffi keeps a process-wide registry of type names; binding twice must reuse, not redeclare.
function ensureType(name: string, make: () => TypeObject): TypeObject {
  try {
    return koffi.type(name);
  } catch {
    return make();
  }
}

const MAP_FAILED = 0xffff_ffff_ffff_ffffn;
const SC_PAGESIZE = 30;

/** Loads libbpf and libc and binds every symbol eagerly, so a missing one fails at start. */
export function bindLibbpf(libbpfPath = 'libbpf.so.1', libcPath = 'libc.so.6'): LibbpfBindings {
  let bpf: LibraryHandle;
  let libc: LibraryHandle;
  try {
    bpf = koffi.load(libbpfPath);
    libc = koffi.load(libcPath);
  } catch (cause) {
    throw new LibbpfLoadError(`cannot load ${libbpfPath} / ${libcPath}`, { cause });
  }
  // koffi's functions take and return `any`: each is typed where it is stored, in LibbpfBindings
  const f = (lib: LibraryHandle, decl: string): ReturnType<LibraryHandle['func']> => {
    try {
      return lib.func(decl);
    } catch (cause) {
      throw new LibbpfLoadError(`libbpf symbol missing: ${decl}`, { cause });
    }
  };
  for (const name of ['bpf_object', 'bpf_map', 'bpf_program', 'btf'])
    ensureType(name, () => koffi.opaque(name));
  ensureType('dy_bpf_test_run_opts', () =>
    koffi.struct('dy_bpf_test_run_opts', {
      sz: 'size_t',
      data_in: 'const void *',
      data_out: 'void *',
      data_size_in: 'uint32_t',
      data_size_out: 'uint32_t',
      ctx_in: 'const void *',
      ctx_out: 'void *',
      ctx_size_in: 'uint32_t',
      ctx_size_out: 'uint32_t',
      retval: 'uint32_t',
      repeat: 'int',
      duration: 'uint32_t',
      flags: 'uint32_t',
      cpu: 'uint32_t',
      batch_size: 'uint32_t',
    }),
  );

  const epollWait = libc.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)');
  const mmap = f(
    libc,
    'void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)',
  );
  const sysconf = f(libc, 'long sysconf(int name)');
  const updateBatch = bpf.func(
    'int bpf_map_update_batch(int fd, const void *keys, const void *values, _Inout_ uint32_t *count, const void *opts)',
  );

  return {
    errno: () => koffi.errno(),
    numPossibleCpus: f(bpf, 'int libbpf_num_possible_cpus(void)'),

    objectOpenFile: f(bpf, 'bpf_object *bpf_object__open_file(const char *path, const void *opts)'),
    objectLoad: f(bpf, 'int bpf_object__load(bpf_object *obj)'),
    objectClose: f(bpf, 'void bpf_object__close(bpf_object *obj)'),
    objectFindMap: f(
      bpf,
      'bpf_map *bpf_object__find_map_by_name(const bpf_object *obj, const char *name)',
    ),
    objectNextMap: f(
      bpf,
      'bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *map)',
    ),
    objectFindProgram: f(
      bpf,
      'bpf_program *bpf_object__find_program_by_name(const bpf_object *obj, const char *name)',
    ),
    objectNextProgram: f(
      bpf,
      'bpf_program *bpf_object__next_program(const bpf_object *obj, bpf_program *prog)',
    ),

    mapName: f(bpf, 'const char *bpf_map__name(const bpf_map *map)'),
    mapFd: f(bpf, 'int bpf_map__fd(const bpf_map *map)'),
    mapType: f(bpf, 'int bpf_map__type(const bpf_map *map)'),
    mapInnerMap: f(bpf, 'bpf_map *bpf_map__inner_map(bpf_map *map)'),
    mapKeySize: f(bpf, 'uint32_t bpf_map__key_size(const bpf_map *map)'),
    mapValueSize: f(bpf, 'uint32_t bpf_map__value_size(const bpf_map *map)'),
    mapMaxEntries: f(bpf, 'uint32_t bpf_map__max_entries(const bpf_map *map)'),
    mapSetMaxEntries: f(bpf, 'int bpf_map__set_max_entries(bpf_map *map, uint32_t max_entries)'),
    mapSetPinPath: f(bpf, 'int bpf_map__set_pin_path(bpf_map *map, const char *path)'),
    mapPinPath: f(bpf, 'const char *bpf_map__pin_path(const bpf_map *map)'),
    mapIsPinned: f(bpf, 'bool bpf_map__is_pinned(const bpf_map *map)'),
    mapUnpin: f(bpf, 'int bpf_map__unpin(bpf_map *map, const char *path)'),
    mapUpdateElemChecked: f(
      bpf,
      'int bpf_map__update_elem(const bpf_map *map, const void *key, size_t key_sz, const void *value, size_t value_sz, uint64_t flags)',
    ),
    mapLookupElemChecked: f(
      bpf,
      'int bpf_map__lookup_elem(const bpf_map *map, const void *key, size_t key_sz, _Out_ void *value, size_t value_sz, uint64_t flags)',
    ),
    mapDeleteElemChecked: f(
      bpf,
      'int bpf_map__delete_elem(const bpf_map *map, const void *key, size_t key_sz, uint64_t flags)',
    ),

    programName: f(bpf, 'const char *bpf_program__name(const bpf_program *prog)'),
    programFd: f(bpf, 'int bpf_program__fd(const bpf_program *prog)'),
    programSetAutoload: f(bpf, 'int bpf_program__set_autoload(bpf_program *prog, bool autoload)'),
    progTestRun: f(
      bpf,
      'int bpf_prog_test_run_opts(int prog_fd, _Inout_ dy_bpf_test_run_opts *opts)',
    ),

    objGet: f(bpf, 'int bpf_obj_get(const char *pathname)'),
    objPin: f(bpf, 'int bpf_obj_pin(int fd, const char *pathname)'),
    objGetInfoByFd: f(
      bpf,
      'int bpf_obj_get_info_by_fd(int fd, _Inout_ void *info, _Inout_ uint32_t *info_len)',
    ),
    mapGetFdById: f(bpf, 'int bpf_map_get_fd_by_id(uint32_t id)'),
    mapCreate: f(
      bpf,
      'int bpf_map_create(int map_type, const char *map_name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const void *opts)',
    ),
    mapUpdateElem: f(
      bpf,
      'int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)',
    ),
    mapLookupElem: f(bpf, 'int bpf_map_lookup_elem(int fd, const void *key, _Out_ void *value)'),
    mapDeleteElem: f(bpf, 'int bpf_map_delete_elem(int fd, const void *key)'),
    mapGetNextKey: f(
      bpf,
      'int bpf_map_get_next_key(int fd, const void *key, _Out_ void *next_key)',
    ),
    mapUpdateBatch: updateBatch,
    mapUpdateBatchAsync: (fd, keys, values, count, opts, done) => {
      (updateBatch.async as (...a: unknown[]) => void)(fd, keys, values, count, opts, done);
    },
    mapDeleteBatch: f(
      bpf,
      'int bpf_map_delete_batch(int fd, const void *keys, _Inout_ uint32_t *count, const void *opts)',
    ),
    mapLookupBatch: f(
      bpf,
      'int bpf_map_lookup_batch(int fd, void *in_batch, _Out_ void *out_batch, _Out_ void *keys, _Out_ void *values, _Inout_ uint32_t *count, const void *opts)',
    ),

    tcHookCreate: f(bpf, 'int bpf_tc_hook_create(void *hook)'),
    tcHookDestroy: f(bpf, 'int bpf_tc_hook_destroy(void *hook)'),
    tcAttach: f(bpf, 'int bpf_tc_attach(const void *hook, _Inout_ void *opts)'),
    tcDetach: f(bpf, 'int bpf_tc_detach(const void *hook, const void *opts)'),
    tcQuery: f(bpf, 'int bpf_tc_query(const void *hook, _Inout_ void *opts)'),

    mmap: (length, prot, flags, fd, offset) => {
      const p = mmap(null, length, prot, flags, fd, offset) as MaybePtr;
      // MAP_FAILED is (void *)-1
      return p === null || p === MAP_FAILED ? null : p;
    },
    munmap: f(libc, 'int munmap(void *addr, size_t length)'),
    pageSize: () => sysconf(SC_PAGESIZE) as number,
    epollCreate1: f(libc, 'int epoll_create1(int flags)'),
    epollCtl: f(libc, 'int epoll_ctl(int epfd, int op, int fd, void *event)'),
    epollWaitAsync: (epfd, events, max, timeoutMs, done) => {
      (epollWait.async as (...a: unknown[]) => void)(epfd, events, max, timeoutMs, done);
    },
    copyOut: (ptr, len) => Buffer.from(new Uint8Array(koffi.view(ptr, len)).slice()),
    view: (ptr, len) => koffi.view(ptr, len),

    btfParse: f(bpf, 'btf *btf__parse(const char *path, void *btf_ext)'),
    btfFree: f(bpf, 'void btf__free(btf *btf)'),
    btfFindByNameKind: f(
      bpf,
      'int32_t btf__find_by_name_kind(const btf *btf, const char *type_name, uint32_t kind)',
    ),
    btfTypeById: f(bpf, 'const void *btf__type_by_id(const btf *btf, uint32_t id)'),
    btfNameByOffset: f(bpf, 'const char *btf__name_by_offset(const btf *btf, uint32_t offset)'),
    btfResolveSize: f(bpf, 'int64_t btf__resolve_size(const btf *btf, uint32_t type_id)'),

    close: f(libc, 'int close(int fd)'),
  };
}
