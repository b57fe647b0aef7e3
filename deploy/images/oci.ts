// OCI image layout (image-spec v1.1) as pure data: the config, manifest and index documents of an
// image whose layers are already written, and the zod schemas the tests read an archive back with.
// Only the fields Dyad sets or containerd reads are modelled.
import { createHash } from 'node:crypto';
import { z } from 'zod';

export const MEDIA_INDEX = 'application/vnd.oci.image.index.v1+json';
export const MEDIA_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const MEDIA_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const MEDIA_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
/** containerd's annotation for the full image name `ctr images import` gives the image. */
export const ANNOTATION_IMAGE_NAME = 'io.containerd.image.name';
export const ANNOTATION_REF_NAME = 'org.opencontainers.image.ref.name';

const Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/);

export const Descriptor = z.object({
  mediaType: z.string().min(1),
  digest: Digest,
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).optional(),
  platform: z.object({ architecture: z.string(), os: z.string() }).optional(),
});
export type Descriptor = z.infer<typeof Descriptor>;

export const ImageConfig = z.object({
  architecture: z.literal('amd64'),
  os: z.literal('linux'),
  config: z.object({
    Entrypoint: z.array(z.string()).optional(),
    Cmd: z.array(z.string()).optional(),
    Env: z.array(z.string()).optional(),
    WorkingDir: z.string().optional(),
    User: z.string().optional(),
  }),
  rootfs: z.object({ type: z.literal('layers'), diff_ids: z.array(Digest).min(1) }),
  history: z.array(z.object({ created_by: z.string(), comment: z.string().optional() })),
});
export type ImageConfig = z.infer<typeof ImageConfig>;

export const Manifest = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.literal(MEDIA_MANIFEST),
  config: Descriptor.extend({ mediaType: z.literal(MEDIA_CONFIG) }),
  layers: z.array(Descriptor.extend({ mediaType: z.literal(MEDIA_LAYER_GZIP) })).min(1),
});
export type Manifest = z.infer<typeof Manifest>;

export const Index = z.object({
  schemaVersion: z.literal(2),
  mediaType: z.literal(MEDIA_INDEX),
  manifests: z.array(Descriptor.extend({ mediaType: z.literal(MEDIA_MANIFEST) })).min(1),
});
export type Index = z.infer<typeof Index>;

export const OCI_LAYOUT = '{"imageLayoutVersion":"1.0.0"}';

/** A layer as written: its gzip blob's digest and size, and the digest of the uncompressed tar. */
export interface Layer {
  readonly digest: string;
  readonly size: number;
  readonly diffId: string;
  /** What made it, for the config's history (`docker history`-style). */
  readonly createdBy: string;
}

export interface ImageSpec {
  /** Full name as the kubelet asks containerd for it, e.g. `docker.io/library/dyad:0.1.0`. */
  readonly name: string;
  readonly layers: readonly Layer[];
  readonly entrypoint?: readonly string[];
  readonly cmd?: readonly string[];
  readonly env?: readonly string[];
  readonly workingDir?: string;
}

/** A JSON document and the descriptor that names it. */
export interface Blob {
  readonly bytes: Buffer;
  readonly descriptor: Descriptor;
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function blob(mediaType: string, document: unknown, annotations?: Record<string, string>): Blob {
  const bytes = Buffer.from(JSON.stringify(document));
  return {
    bytes,
    descriptor: {
      mediaType,
      digest: sha256(bytes),
      size: bytes.length,
      ...(annotations === undefined ? {} : { annotations }),
    },
  };
}

/** The tag part of a full image name (`…/dyad:0.1.0` → `0.1.0`). */
export function tagOf(name: string): string {
  const slash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  if (colon <= slash) throw new Error(`image name ${name} has no tag`);
  return name.slice(colon + 1);
}

/**
 * The documents of one image: config and manifest blobs, and the index that `ctr images import`
 * reads (the manifest's descriptor carries the image's full name, so the import needs no flags).
 * No timestamps, so equal inputs give equal digests.
 */
export function imageDocuments(spec: ImageSpec): {
  config: Blob;
  manifest: Blob;
  index: Index;
} {
  const config: ImageConfig = {
    architecture: 'amd64',
    os: 'linux',
    config: {
      ...(spec.entrypoint === undefined ? {} : { Entrypoint: [...spec.entrypoint] }),
      ...(spec.cmd === undefined ? {} : { Cmd: [...spec.cmd] }),
      ...(spec.env === undefined ? {} : { Env: [...spec.env] }),
      ...(spec.workingDir === undefined ? {} : { WorkingDir: spec.workingDir }),
    },
    rootfs: { type: 'layers', diff_ids: spec.layers.map((l) => l.diffId) },
    history: spec.layers.map((l) => ({ created_by: l.createdBy })),
  };
  const configBlob = blob(MEDIA_CONFIG, config);
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_MANIFEST,
    config: { ...configBlob.descriptor, mediaType: MEDIA_CONFIG },
    layers: spec.layers.map((l) => ({
      mediaType: MEDIA_LAYER_GZIP,
      digest: l.digest,
      size: l.size,
    })),
  };
  const manifestBlob = blob(MEDIA_MANIFEST, manifest);
  const index: Index = {
    schemaVersion: 2,
    mediaType: MEDIA_INDEX,
    manifests: [
      {
        ...manifestBlob.descriptor,
        mediaType: MEDIA_MANIFEST,
        platform: { architecture: 'amd64', os: 'linux' },
        annotations: {
          [ANNOTATION_IMAGE_NAME]: spec.name,
          [ANNOTATION_REF_NAME]: tagOf(spec.name),
        },
      },
    ],
  };
  return { config: configBlob, manifest: manifestBlob, index };
}
