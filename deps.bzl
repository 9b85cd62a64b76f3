"""The external repositories this project builds with, for its own WORKSPACE and for a workspace that
depends on it:

    local_repository(name = "multiprocessing", path = "/path/to/multiprocessing")
    load("@multiprocessing//:deps.bzl", "multiprocessing_deps")
    multiprocessing_deps()

then `deps = ["@multiprocessing//pool"]` (or any other target). The libraries come from Debian's packages,
which the project's tools/bazel installs; the repositories keep their upstream names, so replacing one with
an upstream http_archive changes this file only. A repository the workspace already defines is kept.
"""

load("//third_party:openmpi.bzl", "open_mpi_repository")

def _project_subdir_repository_impl(rctx):
    # Labels in this file resolve within the project, but the paths of local repositories are relative
    # to the main workspace: the project's own directories are found from its WORKSPACE file instead.
    src = rctx.path(rctx.attr.workspace_file).dirname
    for part in rctx.attr.subdir.split("/"):
        src = src.get_child(part)
    if not src.exists:
        fail("%s: %s does not exist" % (rctx.name, src))
    for entry in src.readdir():
        rctx.symlink(entry, entry.basename)

# A directory of this project (third_party/...) as a repository, like local_repository with a path
# relative to the project rather than to the main workspace.
_project_subdir_repository = repository_rule(
    implementation = _project_subdir_repository_impl,
    attrs = {
        "subdir": attr.string(mandatory = True),
        "workspace_file": attr.label(default = Label("//:WORKSPACE"), allow_single_file = True),
    },
    # Re-read on every fetch, as a local_repository is: the directory is part of the project.
    local = True,
)

def _project_subdir(existing, name, subdir):
    if name not in existing:
        _project_subdir_repository(name = name, subdir = subdir)

def _system_headers(existing, name, build_file, path):
    if name not in existing:
        native.new_local_repository(name = name, build_file = str(Label(build_file)), path = path)

def multiprocessing_deps():
    """Defines the repositories the project's targets depend on, unless already defined."""
    existing = native.existing_rules()

    # The five libraries, from Debian's packages.
    _project_subdir(existing, "com_google_absl", "third_party/absl")
    _project_subdir(existing, "com_google_protobuf", "third_party/protobuf")
    _system_headers(existing, "boringssl", "//third_party:boringssl.BUILD", "/usr/include/android")
    _system_headers(existing, "com_google_googletest", "//third_party:googletest.BUILD", "/usr/include/gtest")
    _system_headers(existing, "com_github_google_benchmark", "//third_party:benchmark.BUILD", "/usr/include/benchmark")

    # Bazel 4.2.3's own WORKSPACE suffix would download these even for a C++-only build.
    _project_subdir(existing, "rules_cc", "third_party/rules_cc")
    _project_subdir(existing, "rules_java", "third_party/rules_java")
    _project_subdir(existing, "remote_coverage_tools", "third_party/remote_coverage_tools")

    # Open MPI (Debian's libopenmpi-dev), for //mpi only: found with pkg-config's `ompi` module when a
    # target that uses it is built.
    if "org_open_mpi" not in existing:
        open_mpi_repository(name = "org_open_mpi")
