"""qemu-img info on raw: differential against the reference qemu-img.
Both sides inspect files of identical content and allocation.

The NAMES cases cover the names nodes get: a plain filename where one
opens the same graph, else "json:{...}" of the options that change what
the node reads (per driver), children nested, in the dictionary's key
order, cut at 4095 characters."""
import pytest

from test_img_create import diff, sparse


def empty(d):
    open(d + '/z.raw', 'wb').close()


NULL_SIZED = 'json:{"driver":"null-co","size":1024}'

CASES = [
    ['info', '-f', 'raw', 's.raw'],
    ['info', 's.raw'],
    ['info', '--format', 'raw', 's.raw'],
    ['info', 's.raw', '--output=json', '-f', 'raw'],
    ['info', '--output', 'json', 's.raw'],
    ['info', '--output=human', 's.raw'],
    ['info', '--backing-chain', '-f', 'raw', 's.raw'],
    ['info', '-b', 's.raw'],
    ['info', '--output=json', '--backing-chain', 's.raw'],
    ['info', '-U', 's.raw'],
    ['info', '--force-share', '--output=json', 's.raw'],
    ['info', '--image-opts', 'driver=raw,file.filename=s.raw'],
    ['info', '--image-opts', '--output=json', 'driver=file,filename=s.raw'],
    ['info', '-f', 'file', 's.raw'],
    ['info', '-f', 'file', '--output=json', 's.raw'],
    ['info', '--object', 'secret,id=sec0,data=x', 's.raw'],
    ['info', NULL_SIZED],
    ['info', '--help'],
    # errors
    ['info'],
    ['info', 'a', 'b'],
    ['info', 'nonexistent'],
    ['info', '--output=json', 'nonexistent'],
    ['info', '--image-opts', '-f', 'raw', 's.raw'],
    ['info', '--output=xml', 's.raw'],
    ['info', '--limits', 's.raw'],
    ['info', '-x', 's.raw'],
    ['info', '-f'],
    ['info', '-f', 'nosuchfmt', 's.raw'],
]


@pytest.mark.parametrize('args', CASES, ids=lambda a: ' '.join(a) if isinstance(a, list) else None)
def test_info(our_qemu_img, ref_qemu_img, tmp_path, args):
    diff(our_qemu_img, ref_qemu_img, tmp_path, args, sparse)


@pytest.mark.parametrize('args', [['info', 'z.raw'],
                                  ['info', '--output=json', 'z.raw']])
def test_info_empty(our_qemu_img, ref_qemu_img, tmp_path, args):
    diff(our_qemu_img, ref_qemu_img, tmp_path, args, empty)


def files(d):
    """s.raw (sparse, 10 MiB), odd.raw (5000 bytes) and a blkdebug config."""
    sparse(d)
    with open(d + '/odd.raw', 'wb') as f:
        f.write(b'x' * 5000)
    with open(d + '/bd.conf', 'w') as f:
        f.write('[inject-error]\nevent = "read_aio"\nerrno = "5"\n')


FILE = '{"driver":"file","filename":"s.raw"}'
TG = ['--object', 'throttle-group,id=tg0,x-bps-total=1000000']
# config paths long enough to push a json: name past 4095 characters
LONG_CFG = './' * 2000 + 'bd.conf'
CUT_CFG = './' * 2030 + 'bd.conf'

NAMES = [
    # null-co: size and read-zeroes are strong, latency-ns is not
    ['info', 'null-co://'],
    ['info', 'null-aio://'],
    ['info', 'json:{"driver":"null-co"}'],
    ['info', 'json:{"driver":"null-co","latency-ns":100}'],
    ['info', 'json:{"driver":"null-co","size":1024,"read-zeroes":true}'],
    ['info', 'json:{"driver":"null-co","read-zeroes":false}'],
    ['info', 'json:{"driver":"null-co","size":"1k"}'],
    ['info', '--image-opts', 'driver=null-co,size=1k'],
    ['info', '--image-opts', 'driver=null-co,read-zeroes=on'],
    ['info', '--image-opts', 'driver=null-aio,size=4096,latency-ns=1'],
    ['info', '--image-opts', 'driver=null-aio'],
    ['info', '-f', 'null-co', NULL_SIZED],
    ['info', '--output=json', NULL_SIZED],
    # raw: offset and size are strong; formats reuse a protocol's name
    ['info', 'file:s.raw'],
    ['info', '--output=json', 'file:s.raw'],
    ['info', '-f', 'raw', 'null-co://'],
    ['info', '--image-opts', 'driver=raw,offset=512,file.filename=s.raw'],
    ['info', '--image-opts', 'driver=raw,offset=0,file.filename=s.raw'],
    ['info', '--image-opts',
     'driver=raw,offset=512,size=1024,file.filename=s.raw'],
    ['info', '--output=json', '--image-opts',
     'driver=raw,size=4096,file.filename=s.raw'],
    ['info', '--output=json', '--backing-chain', '--image-opts',
     'driver=raw,offset=512,file.filename=s.raw'],
    ['info', '--backing-chain', '--image-opts',
     'driver=raw,offset=512,file.filename=s.raw'],
    ['info', '--image-opts', 'driver=raw,offset=4608,file.filename=odd.raw'],
    ['info', '--image-opts', 'driver=raw,file.driver=file,file.filename=s.raw'],
    ['info', 'json:{"driver":"raw","file":%s}' % FILE],
    ['info', 'json:{"file":{"filename":"s.raw"}}'],
    ['info', '--output=json', 'json:{"driver":"raw","offset":512,"file":%s}'
     % FILE],
    ['info', 'json:{"driver":"raw","file":{"driver":"null-co"}}'],
    ['info', 'json:{"driver":"raw","offset":0,"file":{"driver":"null-co"}}'],
    ['info', 'json:{"driver":"raw","file":{"driver":"null-co","size":4096}}'],
    ['info', 'json:{"file":{"driver":"null-co","size":4096},"offset":512}'],
    ['info', 'json:{"driver":"raw","offset":512,"size":1024,"file":'
     '{"driver":"null-co","size":2048,"read-zeroes":false,"latency-ns":4}}'],
    ['info', '--output=json', '--image-opts',
     'driver=raw,offset=512,size=1024,file.driver=null-co,file.size=2048,'
     'file.read-zeroes=on'],
    ['info', '--image-opts', 'driver=raw,size=512,file.driver=null-aio'],
    # runtime-only options never reach the name
    ['info', '--image-opts',
     'driver=raw,offset=512,file.filename=s.raw,file.aio=threads,'
     'file.locking=off,node-name=foo,read-only=on,cache.direct=off,'
     'detect-zeroes=on,discard=unmap,file.node-name=bar,cache.no-flush=on,'
     'auto-read-only=on,force-share=on'],
    ['info', '--image-opts',
     'driver=raw,offset=1,file.filename=s.raw,file.x-check-cache-dropped=on,'
     'file.drop-cache=off,file.aio-max-batch=4'],
    ['info', '--image-opts', 'driver=file,filename=s.raw,aio=threads'],
    ['info', 'json:{"driver":"raw","offset":0,"file":{"driver":"file",'
     '"filename":"s.raw","node-name":"x","read-only":true}}'],
    ['info', '-U', '--image-opts', 'driver=raw,size=4096,file.filename=s.raw'],
    ['info', '--image-opts',
     'driver=raw,offset=0,file.driver=host_device,file.filename=/dev/null'],
    # a format over a format or filter has no plain name
    ['info', '--image-opts', 'driver=raw,file.driver=raw,file.file.filename=s.raw'],
    ['info', '--image-opts',
     'driver=raw,file.driver=raw,file.offset=1,file.file.filename=s.raw'],
    ['info', '--image-opts',
     'driver=raw,offset=1,file.driver=raw,file.file.filename=s.raw'],
    ['info', '--output=json', 'json:{"driver":"raw","file":{"driver":"raw",'
     '"file":{"driver":"null-co","read-zeroes":true}}}'],
    # blkdebug: its own "blkdebug:CONFIG:IMAGE" syntax while it fits
    ['info', 'blkdebug::s.raw'],
    ['info', 'blkdebug:bd.conf:s.raw'],
    ['info', '--output=json', 'blkdebug::s.raw'],
    ['info', '-f', 'blkdebug', 'blkdebug::s.raw'],
    ['info', 'blkdebug::null-co://'],
    ['info', 'blkdebug:bd.conf:blkdebug::s.raw'],
    ['info', '--image-opts', 'driver=blkdebug,image.filename=s.raw'],
    ['info', '--output=json', '--image-opts',
     'driver=blkdebug,image.filename=s.raw'],
    ['info', '--image-opts', 'driver=blkdebug,image.filename=s.raw,config=bd.conf'],
    ['info', '--image-opts', 'driver=blkdebug,image.filename=s.raw,align=4096'],
    ['info', '--image-opts',
     'driver=blkdebug,image.filename=s.raw,max-transfer=65536,'
     'opt-write-zero=4096,max-write-zero=65536,opt-discard=4096,'
     'max-discard=65536'],
    ['info', '--image-opts',
     'driver=blkdebug,image.filename=s.raw,take-child-perms.0=resize'],
    ['info', '--image-opts',
     'driver=blkdebug,image.filename=s.raw,unshare-child-perms.0=resize'],
    ['info', '--image-opts',
     'driver=raw,file.driver=blkdebug,file.image.filename=s.raw'],
    ['info', '--image-opts',
     'driver=raw,file.driver=blkdebug,file.image.filename=s.raw,file.align=512'],
    ['info', '--image-opts', 'driver=raw,file.driver=blkdebug,file.x-image=s.raw'],
    ['info', '--image-opts', 'driver=raw,offset=0,file.driver=blkdebug,'
     'file.x-image=s.raw,file.config=bd.conf'],
    ['info', 'json:{"driver":"blkdebug","image":{"driver":"null-co"}}'],
    ['info', 'json:{"driver":"blkdebug","image":{"driver":"null-co","size":4096}}'],
    ['info', 'json:{"driver":"blkdebug","config":"bd.conf","x-image":"s.raw"}'],
    ['info', 'json:{"driver":"blkdebug","config":"bd.conf","image":'
     '{"driver":"null-co","size":512}}'],
    ['info', 'json:{"driver":"blkdebug","config":"bd.conf","image":'
     '{"driver":"raw","file":%s}}' % FILE],
    ['info', 'json:{"driver":"raw","size":1024,"file":{"driver":"blkdebug",'
     '"image":{"driver":"raw","offset":512,"file":{"driver":"null-co"}}}}'],
    ['info', 'json:{"driver":"raw","file":{"driver":"blkdebug","take-child-perms"'
     ':["resize"],"image":{"driver":"null-co"}}}'],
    # rule keys share hash buckets: their order is the reference's
    ['info', '--image-opts', 'driver=blkdebug,inject-error.0.event=read_aio,'
     'inject-error.0.errno=5,image.filename=s.raw'],
    ['info', '--image-opts', 'driver=blkdebug,inject-error.0.errno=5,'
     'inject-error.0.event=read_aio,image.filename=s.raw,'
     'inject-error.0.iotype=read'],
    ['info', 'json:{"driver":"blkdebug","inject-error":[{"event":"read_aio",'
     '"errno":5}],"image":%s}' % FILE],
    ['info', '--output=json', 'json:{"driver":"blkdebug","inject-error":'
     '[{"errno":5,"event":"read_aio"}],"image":%s}' % FILE],
    ['info', 'json:{"driver":"blkdebug","inject-error":[{"event":"read_aio",'
     '"errno":5},{"event":"write_aio","errno":28,"once":true}],"set-state":'
     '[{"event":"read_aio","new_state":2,"state":1}],"image":%s}' % FILE],
    ['info', '--image-opts', 'driver=blkdebug,image.filename=s.raw,'
     'set-state.0.event=read_aio,set-state.0.new_state=2'],
    # names longer than 4095 characters are cut and end in "..."
    ['info', 'json:{"driver":"blkdebug","config":"%s","align":512,"image":'
     '{"driver":"null-co","size":512}}' % LONG_CFG],
    ['info', '--output=json', 'json:{"driver":"blkdebug","config":"%s",'
     '"align":512,"image":{"driver":"null-co","size":512}}' % CUT_CFG],
    ['info', 'json:{"driver":"blkdebug","config":"%s","image":'
     '{"driver":"null-co","size":512}}' % CUT_CFG],
    # filters never reuse their child's name
    TG + ['info', '--image-opts',
          'driver=throttle,throttle-group=tg0,file.filename=s.raw'],
    TG + ['info', '--output=json', '--image-opts',
          'driver=throttle,throttle-group=tg0,file.driver=raw,'
          'file.file.filename=s.raw'],
    TG + ['info', '--image-opts', 'driver=raw,offset=512,file.driver=throttle,'
          'file.throttle-group=tg0,file.file.filename=s.raw'],
    TG + ['info', '--image-opts', 'driver=throttle,throttle-group=tg0,'
          'file.driver=preallocate,file.file.driver=blkdebug,'
          'file.file.image.driver=null-co'],
    ['info', '--image-opts', 'driver=preallocate,prealloc-align=4096,'
     'prealloc-size=65536,file.filename=s.raw'],
    ['info', '--output=json', '--image-opts',
     'driver=preallocate,file.driver=file,file.filename=s.raw'],
    ['info', '--image-opts', 'driver=raw,file.driver=preallocate,'
     'file.prealloc-align=4096,file.file.filename=s.raw'],
    ['info', 'json:{"driver":"preallocate","file":{"driver":"preallocate",'
     '"file":%s}}' % FILE],
    ['info', '-f', 'raw', '--image-opts', 'driver=preallocate,file.filename=s.raw'],
    # other commands showing node names
    ['map', '--image-opts',
     'driver=raw,file.driver=raw,file.offset=512,file.file.filename=s.raw'],
    ['map', 'json:{"driver":"raw","file":{"driver":"null-co","size":4096,'
     '"read-zeroes":true}}'],
    ['map', 'json:{"driver":"null-co","size":4096,"read-zeroes":true}'],
    ['snapshot', '-c', 'foo', 'json:{"file":{"driver":"null-co","size":4096}}'],
    ['snapshot', '-c', 'foo', '--image-opts',
     'file.driver=blkdebug,file.image.filename=s.raw,file.align=4096'],
]


def names_id(args):
    return ' '.join(a if len(a) < 100 else a[:60] + '...' for a in args)


@pytest.mark.parametrize('args', NAMES, ids=names_id)
def test_info_names(our_qemu_img, ref_qemu_img, tmp_path, args):
    diff(our_qemu_img, ref_qemu_img, tmp_path, args, files)
