//! A real etcd cluster for tests: [`EtcdCluster`] starts members of Debian's `etcd` (3.4+) on
//! loopback ports, each with its own data dir, and ends them when dropped.
//!
//! Each member runs under a small `sh` watchdog that kills it when the test process is gone,
//! so a test binary that exits without dropping (a shared cluster in a static, a panic) leaves
//! no etcd behind, and then removes the member's data dir. Members are ended by pid only.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a new cluster has to accept clients.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One etcd member.
#[derive(Debug)]
pub struct Member {
    /// Its name, `m0`, `m1`, ...
    pub name: String,
    /// `127.0.0.1:PORT` where clients connect.
    pub client: String,
    peer: String,
    dir: PathBuf,
    watchdog: Option<Child>,
}

/// A running etcd cluster on loopback.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    _root: TempRoot,
}

impl EtcdCluster {
    /// Starts `size` members (1 or 3, usually) and waits until each accepts connections.
    pub fn start(size: usize) -> Result<EtcdCluster, String> {
        let root = TempRoot::new()?;
        let mut members = Vec::new();
        for n in 0..size {
            let name = format!("m{n}");
            members.push(Member {
                dir: root.path.join(&name),
                name,
                client: format!("127.0.0.1:{}", free_port()?),
                peer: format!("127.0.0.1:{}", free_port()?),
                watchdog: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            _root: root,
        };
        for index in 0..size {
            cluster.launch(index)?;
        }
        for index in 0..size {
            cluster.wait_accepting(index)?;
        }
        Ok(cluster)
    }

    /// One three-member cluster shared by every test of this test binary (each test keeps to
    /// its own namespace). Never dropped: the watchdogs end it when the binary exits.
    pub fn shared() -> &'static EtcdCluster {
        static SHARED: OnceLock<EtcdCluster> = OnceLock::new();
        SHARED.get_or_init(|| match EtcdCluster::start(3) {
            Ok(cluster) => cluster,
            Err(error) => panic!("starting the shared etcd cluster: {error}"),
        })
    }

    /// `host:port` of every member, for clients.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// `etcd://a,b,c`, as `ebb server --store` takes it.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The pid of member `index`'s etcd process, while it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        let text = std::fs::read_to_string(self.members[index].dir.join("etcd.pid")).ok()?;
        text.trim().parse().ok()
    }

    /// Sends `signal` (`STOP`, `CONT`, `KILL`, ...) to member `index`'s etcd.
    pub fn signal(&self, index: usize, signal: &str) -> Result<(), String> {
        let pid = self
            .pid(index)
            .ok_or_else(|| format!("member {index} is not running"))?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {pid} failed"))
        }
    }

    /// The member that leads etcd's raft now, as members answer `/v3/maintenance/status` on
    /// their JSON gateway (their own id against the leader's); None if none says so.
    pub fn raft_leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            let status = post_json(&m.client, "/v3/maintenance/status").unwrap_or_default();
            let field = |name: &str| {
                let at = status.find(&format!("\"{name}\":\""))? + name.len() + 4;
                status[at..].split('"').next().map(str::to_string)
            };
            matches!((field("member_id"), field("leader")), (Some(me), Some(leader)) if me == leader)
        })
    }

    /// Kills member `index` (SIGKILL) and waits for its watchdog to end.
    pub fn kill(&mut self, index: usize) -> Result<(), String> {
        self.signal(index, "KILL")?;
        if let Some(mut watchdog) = self.members[index].watchdog.take() {
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_file(self.members[index].dir.join("etcd.pid"));
        Ok(())
    }

    /// Starts member `index` again on its data dir (after [`EtcdCluster::kill`]).
    pub fn restart(&mut self, index: usize) -> Result<(), String> {
        self.launch(index)?;
        self.wait_accepting(index)
    }

    fn launch(&mut self, index: usize) -> Result<(), String> {
        let member = &self.members[index];
        let state = if member.dir.join("member").exists() {
            "existing"
        } else {
            "new"
        };
        std::fs::create_dir_all(&member.dir).map_err(|e| e.to_string())?;
        let etcd = format!(
            "etcd --name {name} --data-dir {dir}/data \
             --listen-client-urls http://{client} --advertise-client-urls http://{client} \
             --listen-peer-urls http://{peer} --initial-advertise-peer-urls http://{peer} \
             --initial-cluster {cluster} --initial-cluster-state {state} \
             --initial-cluster-token ebb-test --heartbeat-interval 50 --election-timeout 500 \
             --max-txn-ops 4096 --log-level warn --logger zap",
            name = member.name,
            dir = member.dir.display(),
            client = member.client,
            peer = member.peer,
            cluster = self.initial_cluster,
        );
        let script = format!(
            "{etcd} >{dir}/etcd.log 2>&1 & e=$!; echo $e > {dir}/etcd.pid; \
             trap 'kill -9 $e 2>/dev/null; exit 0' TERM; \
             while kill -0 {test} 2>/dev/null && kill -0 $e 2>/dev/null; do sleep 0.2; done; \
             kill -9 $e 2>/dev/null; wait $e 2>/dev/null; \
             kill -0 {test} 2>/dev/null || rm -rf {dir}",
            dir = member.dir.display(),
            test = std::process::id(),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run etcd (is Debian's etcd-server installed?): {e}"))?;
        self.members[index].watchdog = Some(child);
        Ok(())
    }

    fn wait_accepting(&self, index: usize) -> Result<(), String> {
        let member = &self.members[index];
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&member.client).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(member.dir.join("etcd.log")).unwrap_or_default();
        Err(format!(
            "etcd member {} did not accept clients on {} within {:?}; its log:\n{log}",
            member.name, member.client, START_TIMEOUT
        ))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            let _ = self.signal(index, "KILL");
            if let Some(mut watchdog) = self.members[index].watchdog.take() {
                let _ = watchdog.wait();
            }
        }
    }
}

/// A port nothing listens on right now (the OS picks it).
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// A directory removed on drop; on tmpfs when there is one, since etcd fsyncs every write.
#[derive(Debug)]
struct TempRoot {
    path: PathBuf,
}

impl TempRoot {
    fn new() -> Result<TempRoot, String> {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = base.join(format!("ebb-etcd-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        Ok(TempRoot { path })
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// POSTs `{}` to `path` on `addr` over plain HTTP/1.1; the answer's body.
fn post_json(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}
