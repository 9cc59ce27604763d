//! `--loss`: the lossy link of a load run, installed for its duration (removed on drop).

use crate::netshape::Shaper;

use super::args::LoadArgs;

/// Installs `--loss` on the server's media port, or nothing without `--loss`. Fails with what
/// to do when the rules cannot be installed (not root, or not in a namespace of one's own).
pub fn lossy_link(args: &LoadArgs) -> anyhow::Result<Option<Shaper>> {
    let Some(percent) = args.loss else {
        return Ok(None);
    };
    let port = args
        .media_port()
        .ok_or_else(|| anyhow::anyhow!("--loss: no media port (give --media-port)"))?;
    let mut shaper = Shaper::new();
    shaper.lose_both_ways(percent, port).map_err(|e| {
        anyhow::anyhow!(
            "--loss needs nftables and root in a network namespace of its own, with the server \
             inside it, e.g. `unshare --net sh -c 'ip link set lo up && sfu-lite & sfu-lite load \
             --loss {percent}'` ({e})"
        )
    })?;
    Ok(Some(shaper))
}
