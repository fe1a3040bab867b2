//! Reads a module's import and export names straight from the binary (no compilation, so the
//! allow-list tests are instant).

use crate::types::HarnessError;
use std::path::Path;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }
    fn leb(&mut self) -> Option<u64> {
        let mut result = 0u64;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            result |= u64::from(b & 0x7f).checked_shl(shift)?;
            if b & 0x80 == 0 {
                return Some(result);
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }
    fn name(&mut self) -> Option<String> {
        let len = usize::try_from(self.leb()?).ok()?;
        let s = self.bytes.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some(String::from_utf8_lossy(s).into_owned())
    }
    fn limits(&mut self) -> Option<()> {
        let flags = self.byte()?;
        self.leb()?;
        if flags & 1 != 0 {
            self.leb()?;
        }
        Some(())
    }
}

pub(crate) struct Interface {
    pub imports: Vec<(String, String)>,
    pub exports: Vec<String>,
}

fn parse(bytes: &[u8]) -> Option<Interface> {
    if bytes.get(..4)? != b"\0asm" {
        return None;
    }
    let mut r = Reader { bytes, at: 8 };
    let mut out = Interface {
        imports: Vec::new(),
        exports: Vec::new(),
    };
    while r.at < bytes.len() {
        let id = r.byte()?;
        let size = usize::try_from(r.leb()?).ok()?;
        let end = r.at.checked_add(size)?;
        match id {
            2 => {
                for _ in 0..r.leb()? {
                    let module = r.name()?;
                    let name = r.name()?;
                    match r.byte()? {
                        0 => {
                            r.leb()?;
                        }
                        1 => {
                            r.byte()?;
                            r.limits()?;
                        }
                        2 => r.limits()?,
                        3 => {
                            r.byte()?;
                            r.byte()?;
                        }
                        4 => {
                            r.byte()?;
                            r.leb()?;
                        }
                        _ => return None,
                    }
                    out.imports.push((module, name));
                }
            }
            7 => {
                for _ in 0..r.leb()? {
                    out.exports.push(r.name()?);
                    r.byte()?;
                    r.leb()?;
                }
            }
            _ => {}
        }
        r.at = end;
    }
    Some(out)
}

pub(crate) fn interface(path: &Path) -> Result<Interface, HarnessError> {
    let bytes = std::fs::read(path).map_err(|e| {
        HarnessError(format!(
            "{}: {e}: run ./build.sh build (it builds and copies dist/*.wasm)",
            path.display()
        ))
    })?;
    parse(&bytes)
        .ok_or_else(|| HarnessError(format!("{} is not a readable wasm module", path.display())))
}
