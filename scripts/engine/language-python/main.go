// Command pulumi-language-python is Dockyard's own minimal Pulumi language host for Python.
//
// The upstream language host module is not served by the Go module proxy this project can reach, so this
// small replacement implements the parts of pulumirpc.LanguageRuntimeServer that `pulumi preview/up/destroy`,
// `pulumi install` and Python policy packs need. Everything Python-specific (virtualenvs, pip/uv/poetry)
// is delegated to github.com/pulumi/pulumi/sdk/v3/python/toolchain, which the sdk/v3 module ships.
//
// Contract (as the CLI uses it): the CLI starts this binary with the engine's gRPC address as the only
// argument; we serve gRPC on a free loopback port and print that port on stdout. Programs are executed with
// `python -u pulumi-language-python-exec --monitor ... PROGRAM`, where the exec script is the one from the
// sdk/v3 module, installed next to this binary.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"github.com/pulumi/pulumi/sdk/v3/python/toolchain"
)

// version is set at build time with -ldflags "-X main.version=vX.Y.Z".
var version = "v0.0.0-dev"

const (
	execScriptName = "pulumi-language-python-exec"
	// Exit code the exec script uses after it has already shown the user an actionable error.
	exitCodeUserActionable = 32
)

func main() {
	var tracing, root, useExecutor string
	flag.StringVar(&tracing, "tracing", "", "Emit tracing to a Zipkin-compatible tracing endpoint")
	flag.StringVar(&root, "root", "", "Project root (legacy flag, ignored: the CLI sends it per request)")
	flag.StringVar(&useExecutor, "use-executor", "", "Use this exec script instead of the one next to the binary")
	// Legacy flags that older CLIs passed from Pulumi.yaml runtime options; accepted and ignored because
	// the options also arrive with every request in ProgramInfo.
	_ = flag.String("virtualenv", "", "ignored")
	_ = flag.String("toolchain", "", "ignored")
	_ = flag.String("typechecker", "", "ignored")
	flag.Parse()
	logging.InitLogging(false, 0, false)

	execPath := useExecutor
	if execPath == "" {
		self, err := os.Executable()
		if err == nil {
			self, err = filepath.EvalSymlinks(self)
		}
		if err != nil {
			fatalf("cannot locate own executable: %v", err)
		}
		execPath = filepath.Join(filepath.Dir(self), execScriptName)
	}
	if _, err := os.Stat(execPath); err != nil {
		fatalf("missing %s next to the language host (%s): %v", execScriptName, execPath, err)
	}

	host := &pythonHost{execPath: execPath, tracing: tracing}
	if args := flag.Args(); len(args) > 0 {
		host.engineAddress = args[0]
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, host)
			return nil
		},
	})
	if err != nil {
		fatalf("could not start language host RPC server: %v", err)
	}
	// The CLI reads the port from our first line of stdout.
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fatalf("language host RPC stopped serving: %v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: "+format+"\n", args...)
	os.Exit(1)
}

type pythonHost struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	execPath      string
	engineAddress string
	tracing       string
	rootDir       string // from Handshake, used when a request has no ProgramInfo
	programDir    string
}

// ---------------------------------------------------------------------------------------------------------
// Options and toolchain resolution

type hostOptions struct {
	root, programDir, entryPoint string
	py                           toolchain.PythonOptions
}

func (h *pythonHost) options(info *pulumirpc.ProgramInfo, fallbackDir string) (hostOptions, error) {
	o := hostOptions{root: h.rootDir, programDir: h.programDir, entryPoint: "."}
	var raw map[string]any
	if info != nil {
		if info.RootDirectory != "" {
			o.root = info.RootDirectory
		}
		if info.ProgramDirectory != "" {
			o.programDir = info.ProgramDirectory
		}
		if info.EntryPoint != "" {
			o.entryPoint = info.EntryPoint
		}
		if info.Options != nil {
			raw = info.Options.AsMap()
		}
	}
	if o.programDir == "" {
		o.programDir = fallbackDir
	}
	if o.root == "" {
		o.root = o.programDir
	}
	o.py = toolchain.PythonOptions{Root: o.root, ProgramDir: o.programDir, Toolchain: toolchain.Pip}
	for key, value := range raw {
		s, isString := value.(string)
		switch key {
		case "virtualenv":
			if !isString {
				return o, fmt.Errorf("runtime option 'virtualenv' must be a string, got %T", value)
			}
			o.py.Virtualenv = s
		case "toolchain":
			if !isString {
				return o, fmt.Errorf("runtime option 'toolchain' must be a string, got %T", value)
			}
			switch strings.ToLower(s) {
			case "", "pip":
				o.py.Toolchain = toolchain.Pip
			case "uv":
				o.py.Toolchain = toolchain.Uv
			case "poetry":
				o.py.Toolchain = toolchain.Poetry
			default:
				return o, fmt.Errorf("unsupported runtime option toolchain=%q (want pip, uv or poetry)", s)
			}
		case "typechecker":
			// Accepted but not run by this host: run mypy/pyright from CI instead.
		}
	}
	return o, nil
}

// ensureToolchain resolves the toolchain and, when the project asks for a virtualenv that does not exist
// yet, creates it and installs requirements (so a fresh clone works with a plain `pulumi preview`).
func ensureToolchain(ctx context.Context, o hostOptions, out, errOut io.Writer) (toolchain.Toolchain, error) {
	tc, err := toolchain.ResolveToolchain(o.py)
	if err != nil {
		return nil, err
	}
	if err := tc.ValidateVenv(ctx); err != nil {
		if err := tc.EnsureVenv(ctx, o.programDir, false, true, out, errOut); err != nil {
			return nil, fmt.Errorf("creating the virtual environment: %w", err)
		}
		if err := tc.ValidateVenv(ctx); err != nil {
			return nil, err
		}
	}
	return tc, nil
}

// ---------------------------------------------------------------------------------------------------------
// RPC methods

func (h *pythonHost) Handshake(
	_ context.Context, req *pulumirpc.LanguageHandshakeRequest,
) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.EngineAddress != "" {
		h.engineAddress = req.EngineAddress
	}
	if req.RootDirectory != nil {
		h.rootDir = *req.RootDirectory
	}
	if req.ProgramDirectory != nil {
		h.programDir = *req.ProgramDirectory
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *pythonHost) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: version}, nil
}

// pluginManifest is what a Pulumi Python package ships as <module>/pulumi-plugin.json.
type pluginManifest struct {
	Resource         bool   `json:"resource"`
	Name             string `json:"name"`
	Version          string `json:"version"`
	Server           string `json:"server"`
	Parameterization *struct {
		Name    string `json:"name"`
		Version string `json:"version"`
		Value   []byte `json:"value"` // base64 in JSON, decoded by encoding/json
	} `json:"parameterization"`
}

type installedPlugin struct {
	Package string         `json:"package"`
	Version string         `json:"version"`
	Plugin  pluginManifest `json:"plugin"`
}

// Lists every installed distribution that ships a top-level <module>/pulumi-plugin.json. The engine asks before
// every preview and update: each distribution's RECORD is searched as text (importlib's dist.files parses every
// row into a path object: 0.27 s of CPU here, 0.10 s this way).
const listPluginsScript = `
import json, re, sys
from importlib import metadata
# RECORD rows are CSV (path,hash,size); a path with a comma is quoted.
manifest_row = re.compile(r'^"?([^/,"]+/pulumi-plugin\.json)"?,', re.MULTILINE)
found = []
for dist in metadata.distributions():
    record = dist.read_text("RECORD")
    if record is not None:
        paths = manifest_row.findall(record)
    else:  # no RECORD (an egg-info install): the files importlib lists from its other manifests
        paths = [str(f) for f in (dist.files or []) if len(f.parts) == 2 and f.parts[1] == "pulumi-plugin.json"]
    for path in paths:
        try:
            with open(dist.locate_file(path), encoding="utf-8") as fh:
                manifest = json.load(fh)
        except Exception as exc:
            print("warning: cannot read %s: %s" % (path, exc), file=sys.stderr)
            continue
        found.append({"package": dist.metadata.get("Name") or "", "version": dist.version, "plugin": manifest})
json.dump(found, sys.stdout)
`

func (h *pythonHost) requiredPlugins(ctx context.Context, info *pulumirpc.ProgramInfo) ([]installedPlugin, error) {
	o, err := h.options(info, "")
	if err != nil {
		return nil, err
	}
	tc, err := ensureToolchain(ctx, o, os.Stderr, os.Stderr)
	if err != nil {
		return nil, err
	}
	cmd, err := tc.Command(ctx, "-c", listPluginsScript)
	if err != nil {
		return nil, err
	}
	cmd.Dir = o.programDir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("listing installed Pulumi packages with %s: %w: %s", cmd.Path, err, stderr.String())
	}
	var found []installedPlugin
	if err := json.Unmarshal(out, &found); err != nil {
		return nil, fmt.Errorf("parsing the installed Pulumi package list: %w", err)
	}
	var result []installedPlugin
	seen := map[string]bool{}
	for _, p := range found {
		if !p.Plugin.Resource {
			continue
		}
		if p.Plugin.Name == "" {
			p.Plugin.Name = strings.TrimPrefix(strings.ToLower(p.Package), "pulumi-")
		}
		if p.Plugin.Version == "" {
			p.Plugin.Version = p.Version
		}
		if !strings.HasPrefix(p.Plugin.Version, "v") {
			p.Plugin.Version = "v" + p.Plugin.Version
		}
		key := p.Plugin.Name + "@" + p.Plugin.Version
		if p.Plugin.Parameterization != nil {
			key += "/" + p.Plugin.Parameterization.Name + "@" + p.Plugin.Parameterization.Version
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		result = append(result, p)
	}
	sort.Slice(result, func(i, j int) bool { return result[i].Plugin.Name < result[j].Plugin.Name })
	return result, nil
}

func (h *pythonHost) GetRequiredPackages(
	ctx context.Context, req *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	plugins, err := h.requiredPlugins(ctx, req.Info)
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPackagesResponse{}
	for _, p := range plugins {
		dep := &pulumirpc.PackageDependency{
			Kind: "resource", Name: p.Plugin.Name, Version: p.Plugin.Version, Server: p.Plugin.Server,
		}
		if pz := p.Plugin.Parameterization; pz != nil {
			dep.Parameterization = &pulumirpc.PackageParameterization{
				Name: pz.Name, Version: strings.TrimPrefix(pz.Version, "v"), Value: pz.Value,
			}
		}
		resp.Packages = append(resp.Packages, dep)
	}
	return resp, nil
}

func (h *pythonHost) GetRequiredPlugins(
	ctx context.Context, req *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	info := req.Info
	if info == nil {
		info = &pulumirpc.ProgramInfo{ProgramDirectory: req.Pwd, RootDirectory: req.Pwd}
	}
	plugins, err := h.requiredPlugins(ctx, info)
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GetRequiredPluginsResponse{}
	for _, p := range plugins {
		if p.Plugin.Parameterization != nil {
			continue // parameterized packages can only be expressed through GetRequiredPackages
		}
		resp.Plugins = append(resp.Plugins, &pulumirpc.PluginDependency{
			Kind: "resource", Name: p.Plugin.Name, Version: p.Plugin.Version, Server: p.Plugin.Server,
		})
	}
	return resp, nil
}

func (h *pythonHost) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	o, err := h.options(req.Info, req.Pwd)
	if err != nil {
		return nil, err
	}
	tc, err := ensureToolchain(ctx, o, os.Stdout, os.Stderr)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}

	program := o.entryPoint
	if req.Info == nil && req.Program != "" {
		program = req.Program
	}
	if program == "" {
		program = "."
	}

	args := []string{"-u", h.execPath}
	add := func(flagName, value string) {
		if value != "" {
			args = append(args, "--"+flagName, value)
		}
	}
	add("monitor", req.MonitorAddress)
	add("engine", h.engineAddress)
	add("project", req.Project)
	add("stack", req.Stack)
	add("pwd", req.Pwd)
	add("dry_run", strconv.FormatBool(req.DryRun))
	add("parallel", strconv.Itoa(int(req.Parallel)))
	add("tracing", h.tracing)
	add("organization", req.Organization)
	add("root_directory", o.root)
	args = append(args, program)
	args = append(args, req.Args...)

	config := req.Config
	if config == nil {
		config = map[string]string{} // the exec script expects a JSON object, never null
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return nil, fmt.Errorf("serializing config: %w", err)
	}
	secretKeys := req.ConfigSecretKeys
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secretKeysJSON, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, fmt.Errorf("serializing secret config keys: %w", err)
	}

	cmd, err := tc.Command(ctx, args...)
	if err != nil {
		return nil, err
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env,
		"PULUMI_CONFIG="+string(configJSON),
		"PULUMI_CONFIG_SECRET_KEYS="+string(secretKeysJSON),
	)
	if req.Pwd != "" {
		cmd.Dir = req.Pwd
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	logging.V(5).Infof("language host running: %s %s", cmd.Path, strings.Join(args, " "))

	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code := exitErr.ExitCode()
			if status, ok := exitErr.Sys().(syscall.WaitStatus); ok && status.Signaled() {
				return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited due to signal %v", status.Signal())}, nil
			}
			if code == exitCodeUserActionable {
				return &pulumirpc.RunResponse{Bail: true}, nil
			}
			return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", code)}, nil
		}
		return &pulumirpc.RunResponse{
			Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err),
		}, nil
	}
	return &pulumirpc.RunResponse{}, nil
}

func (h *pythonHost) InstallDependencies(
	req *pulumirpc.InstallDependenciesRequest, server pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	o, err := h.options(req.Info, req.Directory)
	if err != nil {
		return err
	}
	if req.IsPlugin && o.py.Toolchain == toolchain.Pip && o.py.Virtualenv == "" {
		o.py.Virtualenv = "venv" // plugins (policy packs) never use the ambient Python
	}
	closer, stdout, stderr, err := rpcutil.MakeInstallDependenciesStreams(server, req.IsTerminal)
	if err != nil {
		return err
	}
	defer closer.Close()

	tc, err := toolchain.ResolveToolchain(o.py)
	if err != nil {
		return err
	}
	dir := o.programDir
	if dir == "" {
		dir = req.Directory
	}
	if err := tc.InstallDependencies(server.Context(), dir, req.UseLanguageVersionTools, true, stdout, stderr); err != nil {
		return err
	}
	return closer.Close()
}

// RunPlugin runs a Python plugin directory, e.g. a policy pack: `python <dir> <args...>` (its __main__.py)
// with the plugin's own virtualenv.
func (h *pythonHost) RunPlugin(
	req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer,
) error {
	o, err := h.options(req.Info, req.Program)
	if err != nil {
		return err
	}
	if o.py.Toolchain == toolchain.Pip && o.py.Virtualenv == "" {
		o.py.Virtualenv = "venv"
	}
	closer, stdout, stderr, err := rpcutil.MakeRunPluginStreams(server, false)
	if err != nil {
		return err
	}
	defer closer.Close()

	tc, err := ensureToolchain(server.Context(), o, stderr, stderr)
	if err != nil {
		return err
	}
	args := append([]string{"-u", o.programDir}, req.Args...)
	cmd, err := tc.Command(server.Context(), args...)
	if err != nil {
		return err
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, req.Env...)
	cmd.Dir = req.Pwd
	cmd.Stdout, cmd.Stderr = stdout, stderr

	exitCode := int32(0)
	if err := cmd.Run(); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			return fmt.Errorf("running plugin %s: %w", o.programDir, err)
		}
		exitCode = int32(exitErr.ExitCode())
	}
	if err := closer.Close(); err != nil {
		return err
	}
	return server.Send(&pulumirpc.RunPluginResponse{
		Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: exitCode},
	})
}

func (h *pythonHost) GetProgramDependencies(
	ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	o, err := h.options(req.Info, "")
	if err != nil {
		return nil, err
	}
	tc, err := toolchain.ResolveToolchain(o.py)
	if err != nil {
		return nil, err
	}
	deps, err := tc.ListPackages(ctx, req.TransitiveDependencies)
	if err != nil {
		return nil, fmt.Errorf("listing python dependencies: %w", err)
	}
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	for _, d := range deps {
		resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: d.Name, Version: d.Version})
	}
	return resp, nil
}

func (h *pythonHost) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	o, err := h.options(req.Info, "")
	if err != nil {
		return nil, err
	}
	tc, err := toolchain.ResolveToolchain(o.py)
	if err != nil {
		return nil, err
	}
	// The engine asks on every preview and update. One Python run answers both fields; the toolchain's About
	// starts three (python --version, sys.executable, and `python -m pip --version`, 0.26 s of CPU, for a
	// toolchain version this response does not carry).
	cmd, err := tc.Command(ctx, "-c", "import sys; print(sys.executable); print(sys.version.split()[0])")
	if err != nil {
		return nil, err
	}
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("asking %s for its executable and version: %w", cmd.Path, err)
	}
	executable, pythonVersion, ok := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if !ok {
		return nil, fmt.Errorf("unexpected answer from %s: %q", cmd.Path, out)
	}
	return &pulumirpc.AboutResponse{
		Executable: executable,
		Version:    pythonVersion,
		Metadata:   map[string]string{"languageHost": "dockyard " + version},
	}, nil
}

// RuntimeOptionsPrompts asks nothing: projects set toolchain/virtualenv in Pulumi.yaml themselves.
func (h *pythonHost) RuntimeOptionsPrompts(
	context.Context, *pulumirpc.RuntimeOptionsRequest,
) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}
