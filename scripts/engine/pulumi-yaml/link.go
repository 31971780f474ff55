// Dockyard patch for github.com/pulumi/pulumi-yaml@v1.25.0, copied into pkg/server/ by scripts/bootstrap-engine.sh.
//
// pulumi v3.260.0 calls LanguageRuntime.Link after generating a package for a project (`pulumi package add`,
// `pulumi install` with `packages:` in Pulumi.yaml). pulumi-yaml v1.25.0 does not implement it, so both fail
// with "linking package: method Link not implemented" and `pulumi package add` never writes `packages:`.
// YAML programs reference packages by name, there is no language-specific project file to update: a no-op.

package server

import (
	"context"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func (host *yamlLanguageHost) Link(context.Context, *pulumirpc.LinkRequest) (*pulumirpc.LinkResponse, error) {
	return &pulumirpc.LinkResponse{}, nil
}
