import koffi from 'koffi';

/** The few libc calls the netlink client and namespace switching need; -1 + errno on failure. */
export interface Libc {
  errno(): number;
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  send(fd: number, buf: Buffer, len: number, flags: number): number;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: Buffer): number;
  close(fd: number): number;
  open(path: string, flags: number): number;
  setns(fd: number, nstype: number): number;
}

export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const NETLINK_ROUTE = 0;
export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
export const SO_PEERCRED = 17;
export const SOL_NETLINK = 270;
export const NETLINK_EXT_ACK = 11;
export const NETLINK_GET_STRICT_CHK = 12;
export const O_RDONLY = 0;
export const O_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;
export const MSG_DONTWAIT = 0x40;

/** Binds libc once; pass the result around (no module-level singleton). */
export function openLibc(): Libc {
  const lib = koffi.load('libc.so.6');
  const socket = lib.func('int socket(int, int, int)') as Libc['socket'];
  const bind = lib.func('int bind(int, const void *, uint32_t)') as Libc['bind'];
  const send = lib.func('long send(int, const void *, size_t, int)') as Libc['send'];
  const recv = lib.func('long recv(int, _Out_ void *, size_t, int)') as Libc['recv'];
  const setsockopt = lib.func(
    'int setsockopt(int, int, int, const void *, uint32_t)',
  ) as Libc['setsockopt'];
  const getsockopt = lib.func(
    'int getsockopt(int, int, int, _Out_ void *, _Inout_ void *)',
  ) as Libc['getsockopt'];
  const close = lib.func('int close(int)') as Libc['close'];
  const open = lib.func('int open(const char *, int)') as Libc['open'];
  const setns = lib.func('int setns(int, int)') as Libc['setns'];
  return {
    errno: () => koffi.errno(),
    socket,
    bind,
    send,
    recv,
    setsockopt,
    getsockopt,
    close,
    open,
    setns,
  };
}
