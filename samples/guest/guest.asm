; migstream test guest: a tiny x86 boot sector (NASM, `nasm -f bin`).
; Boots from SeaBIOS at 0x7c00, enables A20, switches to 32-bit protected
; mode, fills guest RAM 1 MiB..12 MiB with varied page content, prints
; "migstream guest ready" on COM1, then dirties pages forever (rate-limited
; with rdtsc) and prints "migstream guest tick XXXXXXXX" (hex) every 1024
; dirtied pages.
;
; Page kinds for page index i (i = (addr - 1 MiB) / 4096, 0 <= i < 2816):
;   8 MiB <= addr < 10 MiB : zero page
;   else by i % 8: 0 zero, 1 all 0x55, 2 all 0xff, 3 ASCII text,
;                  4 xorshift32 random if i % 128 == 4 (22 pages, 88 KiB),
;                    else sparse (zero page with dword i at (i*8) & 0xffc),
;                  5 zero, 6 all (i & 0xff), 7 ASCII text
; Text pages: a 64-byte line repeated 64 times, first 8 bytes = i in hex.
; Dirty loop (page p chosen by xorshift32 in 1 MiB..5 MiB):
;   every 16th step: whole page rewritten with dword N*0x9E3779B9
;   otherwise:       dword at offset (N*68)&0xffc incremented (small delta)

bits 16
org 0x7c00

PERIOD    equ 400000          ; rdtsc ticks between dirty steps
NPAGES    equ 2816            ; 11 MiB
ZSTART    equ (8-1)*256       ; page index of 8 MiB
ZEND      equ (10-1)*256      ; page index of 10 MiB

start:
    cli
    xor ax, ax
    mov ds, ax
    mov ss, ax
    mov sp, 0x7c00
    mov si, dap               ; load stage 2 (sectors 1..4) to 0x7e00
    mov ah, 0x42              ; dl = boot drive from BIOS
    int 0x13
    in al, 0x92               ; fast A20
    or al, 2
    and al, 0xfe
    out 0x92, al
    lgdt [gdtr]
    mov eax, cr0
    or al, 1
    mov cr0, eax
    jmp 0x08:pm32

dap:   db 16, 0
       dw 4                   ; sectors
       dw 0x7e00, 0           ; offset, segment
       dq 1                   ; LBA
gdt:   dq 0
       dq 0x00CF9A000000FFFF
       dq 0x00CF92000000FFFF
gdtr:  dw 23
       dd gdt

    times 510-($-$$) db 0
    dw 0xaa55

; ---- stage 2 (sector 1..), loaded at 0x7e00 ----
bits 32
pm32:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov esp, 0x7c00
    cld
    mov edi, 0x100000
    mov ebx, 0x12345678       ; xorshift32 state
    xor ebp, ebp              ; page index
fill_page:
    mov eax, ebp
    and eax, 7
    cmp ebp, ZSTART
    jb .k
    cmp ebp, ZEND
    jae .k
    xor eax, eax
.k:
    jmp [kinds + eax*4]

k_zero:
    xor eax, eax
    jmp fillc
k_55:
    mov eax, 0x55555555
    jmp fillc
k_ff:
    or eax, -1
    jmp fillc
k_byte:
    mov eax, ebp
    and eax, 0xff
    imul eax, eax, 0x01010101
fillc:
    mov ecx, 1024
    rep stosd
    jmp next
k_text:
    mov edx, 64
.l: mov esi, text
    mov ecx, 16
    rep movsd
    dec edx
    jnz .l
    mov eax, ebp
    lea edx, [edi-4096]
    call hex8
    jmp next
k_rand:
    test ebp, 0x78
    jz .r
    xor eax, eax              ; sparse page
    mov ecx, 1024
    rep stosd
    lea eax, [ebp*8]
    and eax, 0xffc
    mov [edi + eax - 4096], ebp
    jmp next
.r: mov ecx, 1024
.l: call xs
    mov eax, ebx
    stosd
    loop .l
next:
    inc ebp
    cmp ebp, NPAGES
    jb fill_page

    mov esi, msg_ready
    call puts

    xor ebp, ebp              ; N = dirty step counter
    rdtsc
    mov [last], eax
dloop:
.w: rdtsc
    mov ecx, eax
    sub eax, [last]
    cmp eax, PERIOD
    jb .w
    mov [last], ecx
    inc ebp
    call xs
    mov edi, ebx
    and edi, 0x3ff000
    add edi, 0x100000
    test ebp, 15
    jnz .small
    imul eax, ebp, 0x9E3779B9
    mov ecx, 1024
    rep stosd
    jmp .t
.small:
    imul eax, ebp, 68
    and eax, 0xffc
    inc dword [edi + eax]
.t: test ebp, 1023
    jnz dloop
    mov eax, ebp
    mov edx, hexbuf
    call hex8
    mov esi, msg_tick
    call puts
    jmp dloop

; xorshift32 on ebx, clobbers eax
xs: mov eax, ebx
    shl eax, 13
    xor ebx, eax
    mov eax, ebx
    shr eax, 17
    xor ebx, eax
    mov eax, ebx
    shl eax, 5
    xor ebx, eax
    ret

; write eax as 8 hex digits at [edx]; clobbers eax, ecx, edx
hex8:
    mov ecx, 8
.l: rol eax, 4
    push eax
    and al, 0xf
    add al, '0'
    cmp al, '9'
    jbe .d
    add al, 7
.d: mov [edx], al
    inc edx
    pop eax
    loop .l
    ret

; print NUL-terminated string at esi to COM1; clobbers eax, edx, esi
puts:
    lodsb
    test al, al
    jz .r
    mov ah, al
    mov dx, 0x3fd
.w: in al, dx
    test al, 0x20
    jz .w
    mov al, ah
    mov dx, 0x3f8
    out dx, al
    jmp puts
.r: ret

align 4
kinds: dd k_zero, k_55, k_ff, k_text, k_rand, k_zero, k_byte, k_text
last:  dd 0
msg_ready: db "migstream guest ready", 10, 0
msg_tick:  db "migstream guest tick "
hexbuf:    db "00000000", 10, 0
text:  db "######## migstream ASCII text page: quick brown fox"
       times 63-($-text) db '.'
       db 10

    times 2560-($-$$) db 0
