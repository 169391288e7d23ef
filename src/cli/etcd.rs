//! `mgmt etcd`: start an etcd server member.

use anyhow::{Result, bail};

use super::EtcdArgs;

pub fn run(_args: EtcdArgs) -> Result<u8> {
    bail!("not implemented yet")
}
