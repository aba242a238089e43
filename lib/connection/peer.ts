/**
 * The real endpoints of an accepted socket.
 *
 * @module
 */

/** The real endpoints of an accepted socket. */
export interface PeerInfo {
  /** The peer's address as the socket reports it (the load balancer, when one is used). */
  remoteAddress: string;
  /** The peer's port. */
  remotePort: number;
  /** This end's address. */
  localAddress: string;
  /** This end's port. */
  localPort: number;
}

/** The peer of a connection with no socket to ask (a bare stream). Internal. */
export const NO_PEER: PeerInfo = Object.freeze({
  remoteAddress: "",
  remotePort: 0,
  localAddress: "",
  localPort: 0,
});
