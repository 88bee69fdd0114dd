//! Network namespaces: open one by path, and run work inside it.
//!
//! A thread's network namespace decides which namespace a netlink socket or
//! a `/proc/sys/net` file it opens belongs to. Work that must happen inside a
//! namespace therefore runs on a short-lived thread that enters it and then
//! ends, so no thread of the plugin (least of all the runtime's) is ever left
//! switched into another namespace.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::statfs::{fstatfs, NSFS_MAGIC, PROC_SUPER_MAGIC};

/// Failures to open or enter a namespace, each naming the path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("netns {path}: does not exist")]
    NotFound { path: String },
    #[error("netns {path}: not a network namespace")]
    NotNetns { path: String },
    #[error("netns {path}: is the plugin's own network namespace; refusing to configure the host as a container")]
    OwnNamespace { path: String },
    #[error("netns {path}: {op}: {errno}")]
    Sys {
        path: String,
        op: &'static str,
        errno: Errno,
    },
}

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl AsRawFd for NetNs {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

impl NetNs {
    /// Opens the namespace at `path` (a bind mount such as `/run/netns/x`, or
    /// `/proc/<pid>/ns/net`) for configuring a container: the path must be a
    /// network namespace, and not the one the plugin itself runs in.
    pub fn open_container(path: impl AsRef<Path>) -> Result<NetNs, Error> {
        let ns = NetNs::open(path)?;
        if ns.same_as(&NetNs::current()?) {
            return Err(Error::OwnNamespace {
                path: ns.path_str(),
            });
        }
        Ok(ns)
    }

    /// Opens the namespace at `path`, checking that it is one.
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs, Error> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let file = File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound {
                path: shown.clone(),
            },
            _ => Error::Sys {
                path: shown.clone(),
                op: "open",
                errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            },
        })?;
        let fs = fstatfs(&file).map_err(|errno| Error::Sys {
            path: shown.clone(),
            op: "statfs",
            errno,
        })?;
        // Old kernels show /proc/<pid>/ns/net as procfs, newer ones as nsfs.
        let fs_type = fs.filesystem_type();
        if fs_type != NSFS_MAGIC && fs_type != PROC_SUPER_MAGIC {
            return Err(Error::NotNetns { path: shown });
        }
        let ns = NetNs { file, path };
        // A procfs or nsfs file may still be another kind of namespace (or
        // no namespace at all): asking the kernel which kind it is settles it.
        ns.check_is_network()?;
        Ok(ns)
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<NetNs, Error> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// The path this namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn path_str(&self) -> String {
        self.path.display().to_string()
    }

    /// True when both handles refer to the same namespace.
    pub fn same_as(&self, other: &NetNs) -> bool {
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns
    /// what it returns. The thread ends with `f`, so its namespace dies with it.
    pub fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|errno| Error::Sys {
                    path: self.path_str(),
                    op: "setns",
                    errno,
                })?;
                Ok(f())
            });
            match worker.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Asks the kernel which kind of namespace the file is (`NS_GET_NSTYPE`,
    /// Linux 4.11+): a procfs or nsfs file may be another kind of namespace,
    /// or no namespace at all.
    fn check_is_network(&self) -> Result<(), Error> {
        const NS_GET_NSTYPE: libc::c_ulong = 0xb703; // _IO(0xb7, 0x3)
                                                     // SAFETY: the ioctl takes no argument and only reads the fd we own.
        let kind = unsafe { libc::ioctl(self.file.as_raw_fd(), NS_GET_NSTYPE as _) };
        if kind == libc::CLONE_NEWNET {
            Ok(())
        } else {
            Err(Error::NotNetns {
                path: self.path_str(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_netns_open_missing_path() {
        let err = NetNs::open("/nonexistent/netns").unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/netns"));
    }

    #[test]
    fn test_netns_open_regular_file() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = NetNs::open(f.path()).unwrap_err();
        assert!(matches!(err, Error::NotNetns { .. }), "{err}");
    }

    #[test]
    fn test_netns_open_other_namespace_kind() {
        let err = NetNs::open("/proc/self/ns/mnt").unwrap_err();
        assert!(matches!(err, Error::NotNetns { .. }), "{err}");
    }

    #[test]
    fn test_netns_open_proc_file_that_is_no_namespace() {
        let err = NetNs::open("/proc/self/status").unwrap_err();
        assert!(matches!(err, Error::NotNetns { .. }), "{err}");
    }

    #[test]
    fn test_netns_own_namespace_refused() {
        let err = NetNs::open_container("/proc/self/ns/net").unwrap_err();
        assert!(matches!(err, Error::OwnNamespace { .. }), "{err}");
    }

    #[test]
    fn test_netns_run_in_own_namespace() {
        let ns = NetNs::current().unwrap();
        assert_eq!(ns.run(|| 7).unwrap(), 7);
    }
}
