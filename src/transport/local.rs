//! The local transport: this machine, tokio::process, `runuser -u OS_USER --` when pgtopo runs as
//! root and the node's os_user is another user.

use std::path::Path;

use async_trait::async_trait;

use super::{CommandOutput, CommandSpec, Transport, TransportError};

/// This machine, acting as `os_user`.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    pub os_user: String,
}

impl LocalTransport {
    pub fn new(os_user: impl Into<String>) -> Self {
        LocalTransport {
            os_user: os_user.into(),
        }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn describe(&self) -> String {
        "local".into()
    }

    async fn run(&self, cmd: &CommandSpec) -> Result<CommandOutput, TransportError> {
        let _ = cmd;
        todo!("local run")
    }

    async fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, TransportError> {
        let _ = path;
        todo!()
    }

    async fn write_file_atomic(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), TransportError> {
        let _ = (path, contents, mode);
        todo!()
    }

    async fn remove_file(&self, path: &Path) -> Result<(), TransportError> {
        let _ = path;
        todo!()
    }

    async fn list_dir(&self, path: &Path) -> Result<Option<Vec<String>>, TransportError> {
        let _ = path;
        todo!()
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), TransportError> {
        let _ = (from, to);
        todo!()
    }

    async fn create_dir(&self, path: &Path, mode: u32) -> Result<(), TransportError> {
        let _ = (path, mode);
        todo!()
    }
}
