//! The image of the pause container, the container that holds an awsvpc
//! task's network namespace while the task's containers come and go. No
//! registry is reachable, so the agent makes the image itself: a static ELF
//! of a few dozen bytes that waits forever (no libc, no shell, nothing to
//! update), packed as `/pause` in a one-file tar that the runtime imports.

/// The image the agent imports, and the name its containers run.
pub const PAUSE_IMAGE: &str = "berth/pause:0.1.0";
/// The program's path in the image, which is also its command.
pub const PAUSE_PROGRAM: &str = "/pause";

/// Where the program is loaded; any page-aligned address above the first
/// pages (which `vm.mmap_min_addr` forbids) works.
const LOAD_ADDRESS: u64 = 0x40_0000;
const ELF_HEADER_SIZE: u16 = 64;
const PROGRAM_HEADER_SIZE: u16 = 56;
/// The segment alignment: 64 KiB covers every page size aarch64 kernels use.
const SEGMENT_ALIGN: u64 = 0x1_0000;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// The loop for `arch` (as `std::env::consts::ARCH` names it) and its ELF
/// machine number. The loop blocks in a syscall that only a signal ends,
/// and goes back when one does: signals without a handler are ignored by
/// PID 1 of a namespace, so only SIGKILL (`docker rm -f`) ends it.
fn program(arch: &str) -> Option<(u16, Vec<u8>)> {
    match arch {
        // loop: mov eax, 34 (pause); syscall; jmp loop
        "x86_64" => Some((
            EM_X86_64,
            vec![0xb8, 0x22, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xeb, 0xf7],
        )),
        // aarch64 has no pause(2): ppoll(NULL, 0, NULL, NULL) blocks alike.
        // loop: mov x0..x3, #0; mov x8, #73 (ppoll); svc #0; b loop
        "aarch64" => Some((
            EM_AARCH64,
            [
                0xd280_0000u32,
                0xd280_0001,
                0xd280_0002,
                0xd280_0003,
                0xd280_0928,
                0xd400_0001,
                0x17ff_fffa,
            ]
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .collect(),
        )),
        _ => None,
    }
}

/// A static ELF64 executable for `arch` with one loadable segment (headers
/// and code, read and execute) whose entry point is the loop.
pub fn elf(arch: &str) -> Option<Vec<u8>> {
    let (machine, code) = program(arch)?;
    let headers = u64::from(ELF_HEADER_SIZE) + u64::from(PROGRAM_HEADER_SIZE);
    let size = headers + u64::try_from(code.len()).ok()?;
    let mut out = Vec::new();
    // e_ident: magic, 64-bit, little endian, version 1, System V ABI.
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    out.extend_from_slice(&machine.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&(LOAD_ADDRESS + headers).to_le_bytes()); // e_entry
    out.extend_from_slice(&u64::from(ELF_HEADER_SIZE).to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&ELF_HEADER_SIZE.to_le_bytes());
    out.extend_from_slice(&PROGRAM_HEADER_SIZE.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    out.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    out.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    out.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R | X
    out.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    out.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_vaddr
    out.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_paddr
    out.extend_from_slice(&size.to_le_bytes()); // p_filesz
    out.extend_from_slice(&size.to_le_bytes()); // p_memsz
    out.extend_from_slice(&SEGMENT_ALIGN.to_le_bytes());
    out.extend_from_slice(&code);
    Some(out)
}

/// Writes `value` as zero-padded octal into all but the last byte of
/// `field`, which stays NUL, as ustar numeric fields are.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// A ustar archive holding one regular file, owned by root, dated 1970.
/// `name` must fit ustar's 100 bytes.
pub fn tar(name: &str, mode: u32, contents: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 512;
    let mut header = [0u8; BLOCK];
    header[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut header[100..108], u64::from(mode));
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], contents.len() as u64);
    octal(&mut header[136..148], 0); // mtime
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is taken with its own field as spaces, and written as
    // six octal digits, NUL, space.
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let padding = (BLOCK - contents.len() % BLOCK) % BLOCK;
    let mut out = Vec::with_capacity(BLOCK + contents.len() + padding + 2 * BLOCK);
    out.extend_from_slice(&header);
    out.extend_from_slice(contents);
    out.resize(out.len() + padding + 2 * BLOCK, 0);
    out
}

/// The pause image's root filesystem for this machine's architecture, as
/// a tar to import; `None` on architectures the agent has no loop for.
pub fn root_filesystem() -> Option<Vec<u8>> {
    let program = elf(std::env::consts::ARCH)?;
    Some(tar(PAUSE_PROGRAM.trim_start_matches('/'), 0o755, &program))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(bytes: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
    }

    fn u64_at(bytes: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn elf_headers_point_at_the_loop() {
        for (arch, machine) in [("x86_64", EM_X86_64), ("aarch64", EM_AARCH64)] {
            let elf = elf(arch).unwrap();
            assert_eq!(&elf[..4], b"\x7fELF");
            assert_eq!(elf[4], 2, "64-bit");
            assert_eq!(u16_at(&elf, 16), 2, "ET_EXEC");
            assert_eq!(u16_at(&elf, 18), machine);
            let entry = u64_at(&elf, 24);
            let phoff = usize::try_from(u64_at(&elf, 32)).unwrap();
            assert_eq!(phoff, 64);
            assert_eq!(u16_at(&elf, 54), 56);
            assert_eq!(u16_at(&elf, 56), 1);
            let vaddr = u64_at(&elf, phoff + 16);
            let filesz = u64_at(&elf, phoff + 32);
            assert_eq!(filesz, elf.len() as u64);
            assert_eq!(vaddr % u64_at(&elf, phoff + 48), 0, "segment aligned");
            let code = usize::try_from(entry - vaddr).unwrap();
            assert_eq!(elf[code..], program(arch).unwrap().1[..]);
        }
        assert_eq!(elf("riscv64"), None);
    }

    #[test]
    fn aarch64_loop_branches_back_to_its_start() {
        let code = program("aarch64").unwrap().1;
        let last = u32::from_le_bytes(code[code.len() - 4..].try_into().unwrap());
        assert_eq!(last >> 26, 0b000101, "an unconditional branch");
        // imm26 counts instructions, relative to the branch itself.
        let offset = ((last << 6) as i32) >> 6;
        assert_eq!(offset, -(i32::try_from(code.len() / 4).unwrap() - 1));
        // mov x8, #73: ppoll's number on aarch64.
        let mov_x8 = u32::from_le_bytes(code[16..20].try_into().unwrap());
        assert_eq!((mov_x8 >> 5) & 0xffff, 73);
        assert_eq!(mov_x8 & 0x1f, 8);
    }

    #[test]
    fn tar_holds_one_file_with_a_valid_header() {
        let archive = tar("pause", 0o755, b"hello");
        assert_eq!(archive.len(), 512 * 4);
        let header = &archive[..512];
        assert_eq!(&header[..6], b"pause\0");
        assert_eq!(&header[100..108], b"0000755\0");
        assert_eq!(&header[124..136], b"00000000005\0");
        assert_eq!(header[156], b'0');
        assert_eq!(&header[257..265], b"ustar\x0000");
        let stored =
            u32::from_str_radix(std::str::from_utf8(&header[148..154]).unwrap(), 8).unwrap();
        let mut blank = header.to_vec();
        blank[148..156].fill(b' ');
        assert_eq!(stored, blank.iter().map(|b| u32::from(*b)).sum::<u32>());
        assert_eq!(&archive[512..517], b"hello");
        assert!(archive[517..].iter().all(|b| *b == 0));
    }

    /// The program for this machine really runs, and keeps running.
    #[test]
    fn pause_program_runs_until_killed() {
        use std::os::unix::fs::PermissionsExt;
        let Some(program) = elf(std::env::consts::ARCH) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, program).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Another test thread forking while the file was open for writing
        // makes exec fail with ETXTBSY for a moment.
        let mut child = (0..50)
            .find_map(|_| match std::process::Command::new(&path).spawn() {
                Ok(child) => Some(child),
                Err(error) if error.raw_os_error() == Some(26) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                }
                Err(error) => panic!("cannot run the pause program: {error}"),
            })
            .expect("the pause program starts");
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "it keeps running");
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
