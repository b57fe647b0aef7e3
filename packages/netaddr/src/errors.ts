/** Text that is not an address, prefix or MAC in the form this package accepts. */
export class AddressError extends Error {
  override name = 'AddressError';
}
